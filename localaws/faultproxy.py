"""An HTTP proxy in front of moto that injects AWS-like faults into chosen API calls.

Point the daemon's endpoint knobs at :attr:`FaultProxy.url` and arm faults by operation name
(``ec2:RequestSpotFleet``, ``events:PutRule``, ``lambda:GetFunction``, ``s3:PutObject``, ...).
Fault kinds, each for the next ``times`` matching calls:

=============== ===================================================================
``throttle``    answer 503 without forwarding (throttling / service unavailable)
``error``       answer 500 without forwarding
``reject``      answer 400 without forwarding (a permanent error)
``reset``       drop the connection without forwarding
``reset-after`` forward (the call takes effect), then drop the connection unanswered
``stall-after`` forward, then hold the connection silent for ``stall_seconds``
``delay``       wait ``stall_seconds``, then forward and answer (a slow call: widens races)
``delay-after`` forward (the call takes effect now), then answer ``stall_seconds`` later
``deny``        answer 403 AccessDenied without forwarding (IAM refused the call)
``hide-missing`` forward; a 404 comes back as 403 AccessDenied, as S3 answers a missing
                object to a caller without ``s3:ListBucket``
=============== ===================================================================

The ``-after`` kinds are the hard ones: the caller cannot tell that its call succeeded.

A stall or delay lasts ``stall_seconds`` at most: :meth:`FaultProxy.release` ends every one
under way (and the next ones, until :meth:`FaultProxy.clear`), so that a test whose race is
over -- the competing commands have been answered -- does not wait out the rest of a stall
made long enough for a slow machine.
"""
from __future__ import annotations

import http.client
import http.server
import socket
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass

QUERY_API_VERSIONS = {"2016-11-15": "ec2", "2010-05-08": "iam", "2011-06-15": "sts",
                      "2010-05-15": "cloudformation"}
KINDS = ("throttle", "error", "reject", "reset", "reset-after", "stall-after", "delay",
         "delay-after", "deny", "hide-missing")
STATUS = {"throttle": 503, "error": 500, "reject": 400, "deny": 403}
ACCESS_DENIED = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                 b"<Message>Access Denied</Message></Error>")


@dataclass
class Fault:
    operation: str
    kind: str
    times: int = 1  # negative: every time

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


def operation_of(method: str, path: str, headers: http.client.HTTPMessage, body: bytes) -> str:
    """Name the AWS operation of one HTTP request, as ``service:Operation``."""
    target = headers.get("X-Amz-Target")
    if target:  # JSON protocols: "AWSEvents.PutRule"
        prefix, _, name = target.partition(".")
        return f"{'events' if prefix == 'AWSEvents' else prefix}:{name}"
    if path.startswith("/2015-03-31/functions"):
        tail = path.split("?")[0].rstrip("/").split("/")[3:]
        return "lambda:GetFunction" if method == "GET" and len(tail) == 1 else f"lambda:{method}"
    if "x-www-form-urlencoded" in headers.get("Content-Type", ""):  # query protocols
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        service = QUERY_API_VERSIONS.get(form.get("Version", [""])[0], "query")
        return f"{service}:{form.get('Action', ['?'])[0]}"
    return f"s3:{ {'PUT': 'PutObject', 'DELETE': 'DeleteObject'}.get(method, method) }"


class _Upstream:
    """The connection to moto of one caller's connection, kept open between its calls as the
    emulator keeps them (localaws.moto_main), and opened again after an answer that closed
    it (or a failure)."""

    def __init__(self, address: tuple[str, int], timeout: float):
        self._address, self._timeout = address, timeout
        self._connection: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, headers: http.client.HTTPMessage,
             body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Forward one request (less its hop-by-hop headers); its status, headers, body."""
        forwarded = {k: v for k, v in headers.items()
                     if k.lower() not in ("connection", "expect", "transfer-encoding")}
        if self._connection is None:
            self._connection = http.client.HTTPConnection(*self._address,
                                                          timeout=self._timeout)
        try:
            self._connection.request(method, path, body=body or None, headers=forwarded)
            response = self._connection.getresponse()
            answer = response.status, response.getheaders(), response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return answer

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class FaultProxy:
    def __init__(self, upstream_url: str, *, latency: float = 0.0, stall_seconds: float = 5.0,
                 upstream_timeout: float = 60.0):
        parsed = urllib.parse.urlparse(upstream_url)
        self.upstream = (parsed.hostname, parsed.port)
        self.latency, self.stall_seconds = latency, stall_seconds
        self.upstream_timeout = upstream_timeout
        self.seen: Counter[str] = Counter()
        #: Seconds spent answering calls (reading, forwarding to moto, replying), in all.
        self.busy_seconds = 0.0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A stop is noticed within 0.05 s (socketserver's default, 0.5 s, was paid by every
        # test that stops one).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def arm(self, operation: str, kind: str, times: int = 1) -> None:
        with self._lock:
            self._faults.append(Fault(operation, kind, times))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.seen.clear()
            self.busy_seconds = 0.0
            self._released.clear()

    def release(self) -> None:
        """End the stalls and delays under way now (and skip later ones until clear())."""
        self._released.set()

    def _stall(self) -> None:
        self._released.wait(self.stall_seconds)

    def _take(self, operation: str) -> str | None:
        """Record the call; return the fault kind to inject into it, if any."""
        with self._lock:
            self.seen[operation] += 1
            for fault in self._faults:
                if fault.operation == operation and fault.times != 0:
                    fault.times -= 1
                    return fault.kind
        return None

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Answer in one go: without this, Nagle's algorithm holds the body back until
                # the client acknowledges the headers (tens of ms on loopback), a delay that
                # is the proxy's, not the caller's.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def handle(self) -> None:
                self.upstream = _Upstream(proxy.upstream, proxy.upstream_timeout)
                try:
                    super().handle()
                finally:
                    self.upstream.close()

            def _relay(self) -> None:
                started = time.perf_counter()
                try:
                    self._answer()
                finally:
                    with proxy._lock:
                        proxy.busy_seconds += time.perf_counter() - started

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                operation = operation_of(self.command, self.path, self.headers, body)
                kind = proxy._take(operation)
                if proxy.latency:
                    time.sleep(proxy.latency)
                if kind in STATUS:
                    self._plain(STATUS[kind], ACCESS_DENIED if kind == "deny" else b"")
                    return
                if kind == "reset":
                    self.close_connection = True
                    return
                if kind == "delay":
                    proxy._stall()
                status, headers, payload = self.upstream.send(self.command, self.path,
                                                              self.headers, body)
                if kind == "delay-after":
                    proxy._stall()
                if kind in ("reset-after", "stall-after"):
                    if kind == "stall-after":
                        proxy._stall()
                    self.close_connection = True
                    return
                if kind == "hide-missing" and status == 404:
                    self._plain(403, ACCESS_DENIED)
                    return
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                            "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _plain(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                if payload:
                    self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload and self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        return Handler
