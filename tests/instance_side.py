"""How the tests run the instance side (``condor_annex_ec2``), and on which Python.

On an annex image the instance side runs on the image's own Python -- 3.9 or newer, with
only boto3 -- from the single-file bundle (``python -m annex_ec2.bundle``).  The tests run
``condor_annex_ec2`` as :func:`annex_ec2_command` says:

* by default, the console script of the suite's own virtualenv;
* with ``ANNEX_EC2_COMMAND`` set to a JSON list (``["/.../python", "/.../condor_annex_ec2.pyz"]``),
  that command.  ``scripts/dev.sh test`` sets it, beside the main session, to the bundle on the
  oldest Python 3.9+ this machine has, in a virtualenv holding boto3 alone
  (``.venv-instance-<version>``, made once and kept), and reruns the instance-side tests.

Run as a script -- ``python tests/instance_side.py [BUNDLE.pyz]`` -- it prepares that
interpreter and bundle and prints the JSON for ``ANNEX_EC2_COMMAND``.
"""
from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLDEST_SUPPORTED = (3, 9)
COMMAND_VARIABLE = "ANNEX_EC2_COMMAND"
PYTHON_NAME = re.compile(r"^python3\.\d+$")


# -- the command under test ------------------------------------------------------------

def annex_ec2_command() -> list[str]:
    """The argv that runs ``condor_annex_ec2`` (see the module docstring)."""
    raw = os.environ.get(COMMAND_VARIABLE)
    if not raw:
        from localaws.pool import script
        return [script("condor_annex_ec2")]
    command = json.loads(raw)
    if not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
        raise ValueError(f"{COMMAND_VARIABLE} must be a JSON list of strings, not {raw!r}")
    return command


def command_python() -> str:
    """The interpreter that runs :func:`annex_ec2_command` (the console script's is ours)."""
    return annex_ec2_command()[0] if os.environ.get(COMMAND_VARIABLE) else sys.executable


def instance_env(imds_url: str, **extra: str) -> dict[str, str]:
    """The environment of an instance-side run: no AWS settings of the machine running the
    tests, the fake metadata service, and the emulator's fake credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_url, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", **extra})
    return env


def run_annex_ec2(*args: str, env: dict[str, str],
                  timeout: float = 120) -> subprocess.CompletedProcess:
    """Run condor_annex_ec2 to its end: the suite's console script is forked from the tests'
    fork server (it imports boto3, which the server has), the bundle on another Python
    starts as an image starts it."""
    if os.environ.get(COMMAND_VARIABLE):
        return subprocess.run([*annex_ec2_command(), *args], env=env, capture_output=True,
                              text=True, timeout=timeout)
    from localaws.pool import run_program
    return run_program([*annex_ec2_command(), *args], env, timeout=timeout)


def run_bootstrap(aws_url: str, imds, config_dir, *extra: str,
                  s3_url: str | None = None) -> subprocess.CompletedProcess:
    """Boot: ``condor_annex_ec2`` against the emulator and ``imds`` (a FakeImds), with the
    instance role's credentials when ``imds`` knows them (``.credentials``), as on EC2."""
    env = instance_env(imds.url, AWS_ENDPOINT_URL=aws_url,
                       **getattr(imds, "credentials", {}))
    if s3_url:
        env["AWS_ENDPOINT_URL_S3"] = s3_url
    if "-poweroff-command" not in extra:  # never the real one: this is somebody's machine
        extra += ("-poweroff-command", f"touch {config_dir}.powered-off")
    return run_annex_ec2("-config-dir", str(config_dir), "-retry-base", "0.05", *extra, env=env)


def stub_command(directory, name: str, log) -> None:
    """A ``name`` on PATH (in ``directory``, a pathlib.Path) that only records its arguments
    in ``log``, one line per call: ``name arguments...``."""
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
    path.chmod(0o755)


def condor_params(config_dir, names: list[str], before: str = "") -> dict[str, str]:
    """What HTCondor reads of ``names`` from ``config_dir`` (a pathlib.Path), through the
    real bindings (htcondor2.param) in a fresh process, after ``before`` in condor_config."""
    from localaws.pool import script
    condor_config = config_dir.parent / "condor_config"
    condor_config.write_text(f"LOCAL_DIR = {config_dir.parent}\n{before}\n"
                             f"LOCAL_CONFIG_DIR = {config_dir}\n")
    program = ("import json, sys, htcondor2\n"
               "print(json.dumps({n: str(htcondor2.param.get(n)) for n in sys.argv[1:]}))")
    loaded = subprocess.run([script("python"), "-c", program, *names], capture_output=True,
                            text=True, env={**os.environ, "CONDOR_CONFIG": str(condor_config)})
    assert loaded.returncode == 0, loaded.stderr
    return json.loads(loaded.stdout)


# -- an annex instance -----------------------------------------------------------------

_BOOTS = itertools.count()


def on_demand_annex(aws, run_annex, with_keys, name: str, profile: str,
                    count: int = 1) -> list[str]:
    """An on-demand annex of ``count`` worker-image instances with ``profile``, made by the
    real daemon (``run_annex``, the keys ``with_keys``); its instances' IDs."""
    from annexd_lambda import lease
    from localaws import fixtures
    made = run_annex("-annex-name", name, "-count", str(count), "-lease-duration", "3600",
                     "-lease-function-arn", aws.lease_arn,
                     "-aws-on-demand-ami-id", fixtures.WORKER_IMAGE,
                     "-aws-on-demand-instance-type", "m5.large",
                     "-aws-on-demand-instance-profile-arn", profile, *with_keys)
    assert made.returncode == 0, made.stderr
    return lease.find_instances(aws.ec2, name)


@pytest.fixture
def annex_instance(aws, run_annex, with_keys):
    """An annex made by the real daemon with the setup's instance profile, one of its
    instances, holding that role's credentials as EC2 hands them out (``.credentials``).

    Each test gets an annex name of its own (``.annex``): the module's daemon remembers them.
    The instance's fake metadata service also knows ``.profile`` (its instance profile ARN).
    The daemon copied the annex's config object for the instance as it launched it.
    """
    from annexd_lambda.lease import ANNEX_TAG
    from localaws import fixtures
    from localaws.fakeimds import FakeImds

    name = f"booting-{next(_BOOTS)}"
    profile, _ = fixtures.create_instance_profile_stack(aws.cloudformation, aws.iam,
                                                        "htcondor-annex-config")
    # On-demand: moto shows the instance profile of RunInstances' instances only (AWS shows
    # every instance's), and the daemon copies the object for the instance's profile's role.
    on_demand_annex(aws, run_annex, with_keys, name, profile, count=2)
    instance = aws.ec2.describe_instances(Filters=[
        {"Name": f"tag:{ANNEX_TAG}", "Values": [name]}])["Reservations"][0]["Instances"][0]
    imds = FakeImds(instance["InstanceId"], "us-east-1", profile)
    imds.annex, imds.instance_id, imds.profile = name, instance["InstanceId"], profile
    imds.credentials = fixtures.instance_role_credentials(aws.url, "us-east-1",
                                                          instance["InstanceId"])
    tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
    imds.client_token, imds.owner = tags["htcondor:AnnexClientToken"], tags["htcondor:AnnexOwner"]
    yield imds
    imds.close()


# -- the oldest Python 3.9+ here, with boto3 alone, and the bundle ---------------------

@dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def _probe(candidate: str) -> Interpreter | None:
    """The interpreter ``candidate`` really runs (pyenv shims may run none), or None."""
    try:
        ran = subprocess.run([candidate, "-I", "-c", "import json, sys; print(json.dumps("
                              "[sys.executable, list(sys.version_info[:3])]))"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if ran.returncode != 0:
        return None
    path, version = json.loads(ran.stdout)
    return Interpreter(path, tuple(version))


def _pyenv_roots() -> list[str]:
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv"), "/root/.pyenv"]
    return list(dict.fromkeys(root for root in roots if root and os.path.isdir(root)))


def _python39_candidates() -> Iterator[str]:
    found = shutil.which("python3.9")
    if found:
        yield found
    for root in _pyenv_roots():
        yield from sorted(glob.glob(os.path.join(root, "versions", "3.9*", "bin", "python3.9")))


def _any_python_candidates() -> Iterator[str]:
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        for path in sorted(glob.glob(os.path.join(directory or ".", "python3.*"))):
            if PYTHON_NAME.match(os.path.basename(path)):
                yield path
    for root in _pyenv_roots():
        for path in sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3.*"))):
            if PYTHON_NAME.match(os.path.basename(path)):
                yield path


@functools.lru_cache(maxsize=None)
def oldest_python() -> Interpreter:
    """Python 3.9 (on PATH, else pyenv's), else the oldest Python 3.9+ found; else, loudly,
    the interpreter running the tests."""
    for candidate in _python39_candidates():
        found = _probe(candidate)
        if found and found.version[:2] == OLDEST_SUPPORTED:
            return found
    usable = [found for found in map(_probe, _any_python_candidates())
              if found and found.version >= OLDEST_SUPPORTED]
    if usable:
        return min(usable, key=lambda found: found.version)
    message = (f"NO PYTHON {'.'.join(map(str, OLDEST_SUPPORTED))} OR NEWER BESIDES "
               f"{sys.executable} HERE: the instance side is checked on that one alone, not "
               "on the oldest Python an image may have")
    print(f"\n{'!' * 78}\n{message}\n{'!' * 78}", file=sys.stderr)
    warnings.warn(message)
    return Interpreter(sys.executable, tuple(sys.version_info[:3]))


INSTANCE_LOCK = os.path.join(ROOT, "requirements", "instance.txt")


def instance_venv(interpreter: Interpreter) -> str:
    """A virtualenv of ``interpreter`` holding boto3 and nothing else of ours; its python.

    boto3 and its dependencies come from ``requirements/instance.txt`` (a lock with hashes
    for every Python from 3.9 on, made by ``bash scripts/dev.sh lock``), installed by the
    interpreter's own pip with the hashes required.  Made once (``.venv-instance-<version>``
    in the checkout, gitignored), anew when the lock changes (the stamp names its digest,
    like scripts/dev.sh's), under a lock: parallel test workers may ask at the same time.
    """
    venv = os.path.join(ROOT, f".venv-instance-{interpreter.version_text}")
    python = os.path.join(venv, "bin", "python")
    with open(INSTANCE_LOCK, "rb") as handle:
        digest = hashlib.sha1(handle.read()).hexdigest()[:12]
    stamp = os.path.join(venv, f".installed-{digest}")
    os.makedirs(venv, exist_ok=True)
    with open(os.path.join(venv, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(stamp):
            print(f"making {venv} ({interpreter.path}, boto3 only) ...", file=sys.stderr)
            for entry in os.listdir(venv):  # anew, but keep the lock file we hold
                if entry != ".lock":
                    path = os.path.join(venv, entry)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
            for argv in ([interpreter.path, "-m", "venv", venv],
                         [python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "--require-hashes", "--no-deps", "-r", INSTANCE_LOCK]):
                ran = subprocess.run(argv, capture_output=True, text=True)
                if ran.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv)} failed:\n{ran.stdout}{ran.stderr}")
            open(stamp, "w").close()
    return python


def build_bundle(python: str, target: str) -> str:
    """Build the bundle with ``python`` itself (so bundle.py is checked on it too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    ran = subprocess.run([python, "-m", "annex_ec2.bundle", target], cwd=ROOT,
                         env={**env, "PYTHONPATH": ROOT}, capture_output=True, text=True)
    if ran.returncode != 0:
        raise RuntimeError(f"building {target} with {python} failed:\n{ran.stderr}")
    return target


def prepare(target: str | None = None) -> list[str]:
    """The bundle on the oldest Python here, ready to run: the ANNEX_EC2_COMMAND argv."""
    python = instance_venv(oldest_python())
    target = target or os.path.join(os.path.dirname(os.path.dirname(python)),
                                    "condor_annex_ec2.pyz")
    return [python, build_bundle(python, target)]


if __name__ == "__main__":
    print(json.dumps(prepare(sys.argv[1] if len(sys.argv) > 1 else None)))
