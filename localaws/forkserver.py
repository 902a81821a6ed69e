"""Start the tests' ``condor_annexd`` processes by forking a Python that has already imported
boto3, instead of starting a new interpreter for each.

Why: the suite starts a few hundred daemons, and each spent about 0.2 s of CPU importing
boto3, botocore, urllib3 and s3transfer -- a third of what a daemon costs in a test, and the
largest share of the suite's CPU after the tests' own waiting (docs/testing.md, "The suite's
time").  Importing them once, in this server, and forking it gives every daemon those modules
for nothing.

What the daemon runs is unchanged: the child becomes a new process with its own pid, its own
environment (set before any of our code is imported), stdin from ``/dev/null``, stdout and
stderr appended to the given file, and it runs the installed console script itself
(``runpy``), which imports ``annexd`` and ``htcondor2`` afresh, so they read the child's own
``CONDOR_CONFIG`` and ``ANNEXD_*`` variables.  Only third-party modules that read nothing
from the environment at import are preloaded (:data:`PRELOAD`).  Whatever must start like a
site starts it -- the packaging tests, a master's children, ``-daemonize``, the benchmark's
start-up figure, the demo -- still execs the script (:func:`localaws.children.spawn`).

The server is this file run as a program, a child of the test process; it answers requests,
one JSON object per line on its stdin and stdout.  ``spawn`` forks; ``poll`` reaps.  The
test process holds a :class:`ForkedProcess` for each daemon, which answers like the
``subprocess.Popen`` it replaces (``pid``, ``poll``, ``wait``, ``send_signal``, ``returncode``).
"""
from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

#: Imported once by the server, before it forks: libraries only, none of which reads the
#: environment when imported (botocore reads credentials and settings when a session or
#: client asks, which happens in the child).
PRELOAD = ("boto3", "boto3.session", "botocore.session", "botocore.client",
           "botocore.config", "botocore.exceptions", "botocore.parsers", "botocore.utils",
           "urllib3", "s3transfer.manager", "dateutil.parser", "jmespath", "sqlite3",
           "logging.handlers", "socketserver", "concurrent.futures", "tarfile", "gzip",
           "hmac", "uuid", "email.utils", "classad2",
           # The daemon checks each request with jsonschema, imported on its first request:
           # with attrs and referencing, a quarter of a test daemon's CPU (py-spy).  The CLI
           # checks replies with fastjsonschema.  urllib3 encodes host names with idna.
           "jsonschema", "fastjsonschema", "encodings.idna")

#: Our packages: every module of them that does not import htcondor2 when imported is
#: imported by the server too (:func:`_import_ours`).
OURS = ("annexd", "annexd_lambda", "condor_annex", "annex_ec2")

#: The service models the daemon loads, parsed once by the server (:func:`_keep_models`).
SERVICES = ("ec2", "events", "s3", "lambda", "sts", "iam", "cloudformation")


class ForkServer:
    """The server process, seen from the tests: ``spawn`` a console script in a fork."""

    def __init__(self) -> None:
        # Requests and answers go through the server's stdin and stdout; a child's own
        # stdin, stdout and stderr (run) go over this socket, as SCM_RIGHTS messages.
        self._files, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), str(theirs.fileno())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=[theirs.fileno()])
        self._lock = threading.Lock()
        self.ask("ping")  # ready: everything in PRELOAD is imported

    def ask(self, op: str, fds: list[int] | None = None, **request: Any) -> Any:
        """One request and its answer; RuntimeError if the server is gone or refused.
        ``fds`` are sent along (the server receives them before it reads the request)."""
        assert self._process.stdin is not None and self._process.stdout is not None
        with self._lock:
            try:
                if fds:
                    socket.send_fds(self._files, [b"F"], fds)
                    request["fds"] = len(fds)
                self._process.stdin.write(json.dumps({"op": op, **request}).encode() + b"\n")
                self._process.stdin.flush()
                line = self._process.stdout.readline()
            except (BrokenPipeError, ValueError) as error:
                raise RuntimeError(f"the fork server is gone: {error}") from error
        if not line:
            raise RuntimeError(f"the fork server is gone (status {self._process.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the fork server refused {op}: {answer['error']}")
        return answer["result"]

    def spawn(self, argv: list[str], env: dict[str, str], output_path: str | None,
              cwd: str | None = None) -> "ForkedProcess":
        """Run the Python script ``argv[0]`` with ``argv`` in a fork, as
        :func:`localaws.children.spawn` would run it in a new interpreter."""
        pid = self.ask("spawn", argv=argv, env=env, output=output_path or os.devnull, cwd=cwd)
        return ForkedProcess(self, pid, argv)

    def run(self, argv: list[str], env: dict[str, str], *, input: str | None = None,
            timeout: float | None = None, cwd: str | None = None
            ) -> subprocess.CompletedProcess:
        """As ``subprocess.run(argv, env=env, input=input, capture_output=True, text=True,
        timeout=timeout, cwd=cwd)``, with the Python script ``argv[0]`` run in a fork."""
        # pylint: disable=redefined-builtin,consider-using-with
        ends = [os.pipe() for _ in range(3)]  # (read, write) for stdin, stdout, stderr
        theirs = [ends[0][0], ends[1][1], ends[2][1]]
        try:
            pid = self.ask("spawn", argv=argv, env=env, cwd=cwd, fds=theirs)
        finally:
            for fd in theirs:
                os.close(fd)
        process = ForkedProcess(self, pid, argv)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            out, err = _exchange(ends[0][1], ends[1][0], ends[2][0],
                                 (input or "").encode(), deadline)
            process.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise subprocess.TimeoutExpired(argv, timeout or 0.0) from None
        return subprocess.CompletedProcess(argv, process.returncode, _text(out), _text(err))

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)
        self._files.close()


def _text(data: bytes) -> str:
    """Bytes a child wrote, as ``text=True`` gives them (universal newlines)."""
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


def _exchange(stdin: int, stdout: int, stderr: int, data: bytes,
              deadline: float | None) -> tuple[bytes, bytes]:
    """Write ``data`` to ``stdin`` (then close it) and read ``stdout`` and ``stderr`` to their
    ends, all at once as ``communicate`` does; closes all three."""
    received: dict[int, list[bytes]] = {stdout: [], stderr: []}
    with selectors.DefaultSelector() as selector:
        if data:
            os.set_blocking(stdin, False)
            selector.register(stdin, selectors.EVENT_WRITE)
        else:
            os.close(stdin)
        for fd in received:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                for key in list(selector.get_map().values()):
                    os.close(key.fd)
                raise subprocess.TimeoutExpired("", 0.0)
            for key, _ in selector.select(left):
                if key.fd == stdin:
                    try:
                        data = data[os.write(stdin, data[:65536]):]
                    except BrokenPipeError:
                        data = b""
                    if not data:
                        selector.unregister(stdin)
                        os.close(stdin)
                    continue
                chunk = os.read(key.fd, 65536)
                if chunk:
                    received[key.fd].append(chunk)
                else:
                    selector.unregister(key.fd)
                    os.close(key.fd)
    return b"".join(received[stdout]), b"".join(received[stderr])


class ForkedProcess:
    """A forked child, answering like :class:`subprocess.Popen` for what the tests use."""

    def __init__(self, server: ForkServer, pid: int, argv: list[str]):
        self._server = server
        self.pid = pid
        self.args = argv
        self.returncode: int | None = None
        self._reaping = threading.Lock()  # one poll at a time: the server reaps only once

    def poll(self) -> int | None:
        with self._reaping:
            if self.returncode is None:
                self.returncode = self._server.ask("poll", pid=self.pid)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a pid that was reaped (and may be reused)
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# ---- the server ------------------------------------------------------------------------------

def _returncode(status: int) -> int:
    """As ``subprocess.Popen.returncode``: the exit status, or minus the signal's number."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _become(request: dict[str, Any]) -> None:
    """In the fork: become ``argv`` with its own environment and files, run it, exit."""
    import io
    import runpy
    import traceback
    code: Any = 1
    try:
        if request.get("files"):  # run: the caller's pipes
            for target, fd in enumerate(request["files"]):
                os.dup2(fd, target)
        else:  # spawn: nothing to read, output appended to a file
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            output = os.open(request["output"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(output, 1)
            os.dup2(output, 2)
        os.closerange(3, 1024)
        # Fresh stream objects: the server's stdin buffer may hold requests read ahead.
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True,
                                      errors="backslashreplace")
        if request.get("cwd"):
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as for a script run
        if PROFILE:
            _run_profiled(argv[0])
        else:
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as done:
        code = done.code
    except BaseException:  # pylint: disable=broad-exception-caught
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)  # pylint: disable=protected-access


#: ANNEX_FORKSERVER_PROFILE=DIR: each child runs under cProfile and leaves its figures in
#: DIR/<program>-<pid>.prof when it exits (not when killed) -- where a daemon's CPU goes.
PROFILE = os.environ.get("ANNEX_FORKSERVER_PROFILE")


def _run_profiled(script: str) -> None:
    """Run ``script`` under cProfile; its figures are written when it returns or exits,
    through ``os._exit`` after the exit handlers too, as the daemon does."""
    import atexit
    import cProfile
    import runpy
    profiler = cProfile.Profile()
    path = os.path.join(str(PROFILE), f"{os.path.basename(script)}-{os.getpid()}.prof")

    def dump() -> None:
        profiler.disable()
        profiler.dump_stats(path)

    atexit.register(dump)
    profiler.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        atexit.unregister(dump)
        dump()


def _keep_models() -> None:
    """Parse botocore's data files once, here, and give every fork the parsed copy.

    Each daemon parsed EC2's model and the endpoint rules again (``json.loads`` into
    OrderedDicts: about a tenth of a daemon's CPU in a test).  botocore's own loader already
    hands one parsed copy to every client of a process (its ``instance_cache``) and never
    changes it; this extends the same sharing to the forks, each of which gets the pages as
    they were (copy-on-write).
    """
    import boto3.session
    import botocore.loaders
    parsed: dict[str, Any] = {}
    load_file = botocore.loaders.JSONFileLoader.load_file

    def load_file_once(loader: Any, file_path: str) -> Any:
        if file_path not in parsed:
            parsed[file_path] = load_file(loader, file_path)
        return parsed[file_path]

    botocore.loaders.JSONFileLoader.load_file = load_file_once  # type: ignore[method-assign]
    _keep_service_lists()
    # A boto3 session's loader: boto3 adds its own data directory to the search paths.
    data = boto3.session.Session()._session.get_component(  # pylint: disable=protected-access
        "data_loader")
    for name in ("endpoints", "partitions", "sdk-default-configuration", "_retry"):
        data.load_data(name)
    for service in SERVICES:
        for kind in ("service-2", "endpoint-rule-set-1", "paginators-1"):
            data.load_service_model(service, kind)
    # One client of each service, made and dropped: what botocore keeps for the process
    # (the method names of every operation, xform_name's cache) is then the forks' too.  The
    # first clients of a process cost about 60 ms, later ones 35 (measured in a fork).
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="warm",
                                    aws_secret_access_key="warm")
    for service in SERVICES:
        session.client(service, endpoint_url="http://127.0.0.1:9").close()


def _keep_service_lists() -> None:
    """List botocore's services once, here, for every fork.

    Before it loads a model, each botocore session's loader lists the services of its data
    directories: a ``listdir`` of each of some 400 services and a look for the model file in
    each version -- about 15% of a test daemon's CPU, once per model kind per session
    (py-spy).  The answer depends only on the search paths (and which of them exist) and
    on what is installed, which nothing changes during a run: it is kept by those.
    """
    import botocore.loaders
    listed: dict[tuple[Any, ...], Any] = {}
    list_services = botocore.loaders.Loader.list_available_services

    def list_services_once(loader: Any, type_name: str) -> Any:
        # Each path once: a loader shared by two boto3 sessions (as the daemon's listing
        # session shares its models) holds boto3's own directory twice, and lists the same.
        key = (type_name, *dict.fromkeys((path, os.path.isdir(path))
                                         for path in loader.search_paths))
        if key not in listed:
            listed[key] = list_services(loader, type_name)
        return list(listed[key])

    botocore.loaders.Loader.list_available_services = list_services_once  # type: ignore


#: ANNEX_FORKSERVER_ACCOUNTING=PATH: each reaped child's program and CPU seconds (user,
#: system) appended to PATH, a line each -- where the suite's CPU goes (docs/testing.md).
ACCOUNTING = os.environ.get("ANNEX_FORKSERVER_ACCOUNTING")


def _account(program: str, usage: Any) -> None:
    assert ACCOUNTING
    with open(ACCOUNTING, "a", encoding="utf-8") as log:
        log.write(f"{program}\t{usage.ru_utime:.3f}\t{usage.ru_stime:.3f}\n")


class _NoHTCondor:
    """A finder that refuses htcondor2 (and so every module importing it when imported)."""

    @staticmethod
    def find_spec(name: str, *_: Any) -> None:
        if name.split(".")[0] == "htcondor2":
            raise ImportError("htcondor2 is imported by each fork, not by the server")


def _import_ours() -> None:
    """Import our own modules, except those that import htcondor2 when imported.

    Our modules read nothing from the environment when imported (the knobs, the crash
    points and the master's variables are read when used), so a fork can start with them;
    htcondor2 reads the HTCondor configuration when imported, so it, and every module that
    imports it at the top (the daemon's main, the demand's schedd reader), is imported by
    the fork, from the fork's own CONDOR_CONFIG.  A ``__main__`` module is never imported.
    """
    import importlib
    import pkgutil
    blocker = _NoHTCondor()
    sys.meta_path.insert(0, blocker)  # type: ignore[arg-type]
    try:
        for package_name in OURS:
            package = importlib.import_module(package_name)
            for module in pkgutil.walk_packages(package.__path__, package_name + "."):
                if module.name.rsplit(".", 1)[-1] == "__main__":
                    continue
                try:
                    importlib.import_module(module.name)
                except ImportError:
                    pass  # it imports htcondor2: the fork imports it
    finally:
        sys.meta_path.remove(blocker)  # type: ignore[arg-type]
    assert "htcondor2" not in sys.modules


def _serve(files: socket.socket) -> None:
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    _keep_models()
    _import_ours()
    # condor_annex compiles its reply checks (fastjsonschema) on its first reply: 5 ms of
    # each run's 55.  They depend on our schemas alone.
    from annexd.rpc import protocol
    protocol.compile_reply_checks()
    # Everything loaded so far is kept for good: a fork's garbage collections skip it.
    # Without this, a child's first full collection walked every object inherited from here
    # (and copied the pages it touched), and the more the server preloaded, the more a fork
    # paid for it.
    gc.freeze()
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    names: dict[int, str] = {}  # pid -> program, for ACCOUNTING
    for line in requests:
        request = json.loads(line)
        if request.get("fds"):
            _, request["files"], _, _ = socket.recv_fds(files, 1, request["fds"])
        try:
            if request["op"] == "ping":
                result: Any = "pong"
            elif request["op"] == "spawn":
                replies.flush()
                pid = os.fork()
                if pid == 0:
                    files.close()
                    _become(request)
                names[pid] = os.path.basename(request["argv"][0])
                result = pid
            elif request["op"] == "poll":
                # Reaped once, and answered once (the client keeps the answer): the kernel
                # may give a reaped pid to the next fork, so nothing is kept here by pid.
                done, status, usage = os.wait4(request["pid"], os.WNOHANG)
                result = _returncode(status) if done else None
                if done and ACCOUNTING:
                    _account(names.pop(done, "?"), usage)
            else:
                raise ValueError(f"unknown request {request['op']!r}")
            answer = {"result": result}
        except Exception as error:  # pylint: disable=broad-exception-caught
            answer = {"error": f"{type(error).__name__}: {error}"}
        for fd in request.get("files", ()):
            os.close(fd)  # the child has its own copies
        replies.write(json.dumps(answer).encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
