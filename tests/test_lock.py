"""The locked environments (``requirements/``; docs/testing.md, "The locked environment").

* ``requirements/test.txt`` -- the test virtualenv (Python 3.11, Linux): pyproject.toml's
  dependencies, its ``test`` extra and ``requirements/venv.in``, each pinned with hashes;
* ``requirements/instance.txt`` -- boto3 alone, for the instance side on Python 3.9 and on;
* ``requirements/uv.txt`` -- uv, the tool that makes and installs them, at one version.

These tests fail when pyproject.toml's ranges and the lock disagree, when a lock line has no
hash, or when the running virtualenv is not exactly the lock.  The last ones show what moto
5.2.6 does with an S3 read that AWS authorizes (the reason pyproject.toml excludes it).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "requirements")
LOCK = os.path.join(REQUIREMENTS, "test.txt")
INSTANCE_LOCK = os.path.join(REQUIREMENTS, "instance.txt")
TOOLS_LOCK = os.path.join(REQUIREMENTS, "uv.txt")
PROJECT = "condor-annexd"

#: The environment requirements/test.txt is resolved for (scripts/dev.sh lock).
TARGET = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.0",
          "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
          "platform_machine": "x86_64", "implementation_name": "cpython",
          "platform_python_implementation": "CPython"}

#: moto releases the suite cannot run on, and why (pyproject.toml's test extra excludes each).
BAD_MOTO = {
    "5.2.6": "authorizes an S3 request by the operation's name, not by the IAM action AWS "
             "checks: HeadObject needs s3:HeadObject (no such action; AWS takes "
             "s3:GetObject), ListObjectsV2 s3:ListObjectsV2 (AWS: s3:ListBucket)",
}


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, environment: dict[str, str]) -> bool:
        return self.marker is None or self.marker.evaluate(environment)


def _logical_lines(path: str) -> Iterator[str]:
    """The requirement lines of ``path``, continuation lines joined, comments dropped."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    text = re.sub(r"\\\n", " ", text)
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            yield line


def read_lock(path: str) -> list[Pin]:
    pins = []
    for line in _logical_lines(path):
        hashes = tuple(re.findall(r"--hash=(\S+)", line))
        rest = re.sub(r"--hash=\S+", "", line).strip()
        assert not rest.startswith("-"), f"{path}: an option, not a pin: {line!r}"
        requirement = Requirement(rest)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", \
            f"{path}: {rest!r} is not pinned with =="
        assert not requirement.url, f"{path}: {rest!r} is a URL, not a pin"
        pins.append(Pin(canonicalize_name(requirement.name), specifiers[0].version,
                        requirement.marker, hashes))
    return pins


def pinned(pins: list[Pin], environment: dict[str, str]) -> dict[str, str]:
    """name -> version of the pins that apply in ``environment`` (one each)."""
    out: dict[str, str] = {}
    for pin in pins:
        if pin.applies(environment):
            assert pin.name not in out, f"{pin.name} is pinned twice for {environment}"
            out[pin.name] = pin.version
    return out


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)


def project_requirements() -> list[Requirement]:
    """What the lock must hold: the dependencies, the test extra, requirements/venv.in."""
    project = pyproject()["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    lines += _logical_lines(os.path.join(REQUIREMENTS, "venv.in"))
    return [Requirement(line) for line in lines]


def _check_within(requirement: Requirement, locked: dict[str, str], where: str) -> None:
    name = canonicalize_name(requirement.name)
    assert name in locked, f"{requirement} ({where}) has no pin in requirements/test.txt"
    assert requirement.specifier.contains(locked[name], prereleases=True), \
        f"requirements/test.txt pins {name}=={locked[name]}, outside {requirement} ({where})"


# -- the lock against pyproject.toml ---------------------------------------------------

def test_every_requirement_is_locked_within_its_range():
    locked = pinned(read_lock(LOCK), TARGET)
    for requirement in project_requirements():
        if requirement.marker is None or requirement.marker.evaluate(TARGET):
            _check_within(requirement, locked, "pyproject.toml or requirements/venv.in")


def test_every_lock_line_is_pinned_with_hashes():
    for path in (LOCK, INSTANCE_LOCK, TOOLS_LOCK):
        pins = read_lock(path)
        assert pins, f"{path} pins nothing"
        for pin in pins:
            assert pin.hashes, f"{path}: {pin.name}=={pin.version} has no hash"
            assert all(h.startswith("sha256:") and len(h) == 7 + 64 for h in pin.hashes), \
                f"{path}: {pin.name}: {pin.hashes}"


def test_the_project_itself_is_not_locked():
    assert canonicalize_name(PROJECT) not in {pin.name for pin in read_lock(LOCK)}


def test_instance_lock_holds_boto3_in_pyprojects_range_for_every_python_from_39():
    boto3, = [Requirement(line) for line in pyproject()["project"]["dependencies"]
              if canonicalize_name(Requirement(line).name) == "boto3"]
    pins = read_lock(INSTANCE_LOCK)
    for minor in range(9, 15):
        environment = {**TARGET, "python_version": f"3.{minor}",
                       "python_full_version": f"3.{minor}.0"}
        locked = pinned(pins, environment)
        assert "boto3" in locked, f"no boto3 for Python 3.{minor}"
        assert boto3.specifier.contains(locked["boto3"]), (minor, locked["boto3"], boto3)
        assert {"boto3", "botocore", "s3transfer"} <= set(locked), locked


def test_uv_is_one_exact_version():
    wanted = [Requirement(line) for line in _logical_lines(os.path.join(REQUIREMENTS, "uv.in"))]
    assert [str(r.specifier) for r in wanted] == [f"=={read_lock(TOOLS_LOCK)[0].version}"]
    uv = os.path.join(ROOT, ".venv-tools", "bin", "uv")
    if os.path.exists(uv):  # scripts/dev.sh made it: it is that version
        ran = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
        assert ran.stdout.split()[1] == read_lock(TOOLS_LOCK)[0].version, ran.stdout


# -- the running virtualenv against the lock -------------------------------------------

def _installed() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonicalize_name(name), dist.version)
    return out


def test_installed_versions_equal_the_lock():
    here = dict(default_environment())
    locked = pinned(read_lock(LOCK), here)
    installed = _installed()
    wrong = {name: (version, installed.get(name)) for name, version in locked.items()
             if installed.get(name) != version}
    assert not wrong, f"locked vs installed in {sys.prefix}: {wrong} (bash scripts/dev.sh " \
                      "makes the virtualenv anew from the lock)"
    extra = set(installed) - set(locked) - {canonicalize_name(PROJECT)}
    assert not extra, f"installed in {sys.prefix} but not locked: {sorted(extra)}"


def test_lock_is_closed_under_the_installed_packages_own_requirements():
    """Every requirement of every locked package (with the extras asked of it) is locked
    within its range: the lock is a whole resolution, not a list of top-level pins."""
    here = dict(default_environment())
    locked = pinned(read_lock(LOCK), here)
    seen: set[tuple[str, str]] = set()
    queue = [(r, "pyproject.toml") for r in project_requirements()]
    while queue:
        requirement, where = queue.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(here):
            continue
        _check_within(requirement, locked, where)
        name = canonicalize_name(requirement.name)
        for extra in ["", *sorted(requirement.extras)]:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for line in importlib.metadata.requires(name) or []:
                own = Requirement(line)
                if own.marker is None or own.marker.evaluate({**here, "extra": extra}):
                    queue.append((own, f"{name}{f'[{extra}]' if extra else ''}"))


# -- moto: the versions pyproject.toml excludes ----------------------------------------

def test_pyproject_excludes_every_bad_moto_and_the_lock_holds_none():
    moto, = [Requirement(line) for line in pyproject()["project"]["optional-dependencies"]["test"]
             if canonicalize_name(Requirement(line).name) == "moto"]
    for version, why in BAD_MOTO.items():
        assert not moto.specifier.contains(version), f"moto {version} must be excluded: {why}"
    assert pinned(read_lock(LOCK), TARGET)["moto"] not in BAD_MOTO


MOTO = importlib.metadata.version("moto")

#: The instance role's S3 statements (cfn/instance-profile.yaml) as
#: tests/test_iam_enforced.py gives them to moto: Condition stripped (moto would not judge it).

def instance_role_s3_statements(bucket: str) -> list[dict]:
    return [{"Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/config-*.tar.gz"},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}]


def _reset_auth(url: str, count: str) -> None:
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=count.encode(),
                                     headers={"Content-Type": "text/plain"}, method="POST")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def as_the_instance(moto_server):
    """An IAM user holding the instance role's S3 statements, a config object, and a call
    maker: ``call(operation, **params)`` under moto's enforcement -> "ok" or the error code."""
    import boto3
    from localaws import fixtures
    url = moto_server.url
    s3, iam = fixtures.client("s3", url, "us-east-1"), fixtures.client("iam", url, "us-east-1")
    bucket, user = f"lock-{uuid.uuid4().hex[:12]}", f"lock-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="config-a.tar.gz", Body=b"x")
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="instance", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": instance_role_s3_statements(bucket)}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    mine = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"])

    def call(operation: str, **params: object) -> str:
        _reset_auth(url, "0")
        try:
            getattr(mine, operation)(Bucket=bucket, **params)
            return "ok"
        except mine.exceptions.ClientError as error:
            return str(error.response["Error"]["Code"])
        finally:
            _reset_auth(url, "inf")
    return call


def test_moto_enforces_the_instance_roles_s3_statements(as_the_instance):
    """The control: enforcement is on, and GetObject (the IAM action's own name) passes."""
    assert as_the_instance("get_object", Key="config-a.tar.gz") == "ok"
    assert as_the_instance("get_object", Key="other") == "AccessDenied"
    assert as_the_instance("head_object", Key="other") == "403"


bad_moto = pytest.mark.xfail(MOTO in BAD_MOTO, strict=True,
                             reason=f"moto {MOTO}: {BAD_MOTO.get(MOTO)}")


@bad_moto
def test_moto_authorizes_head_object_by_s3_get_object_as_aws_does(as_the_instance):
    """condor_annex_ec2 -refresh-lease reads the lease end with HeadObject, which AWS
    authorizes as s3:GetObject.  moto 5.2.6 asks for s3:HeadObject and answers 403."""
    assert as_the_instance("head_object", Key="config-a.tar.gz") == "ok"


@bad_moto
def test_moto_authorizes_list_objects_v2_by_s3_list_bucket_as_aws_does(as_the_instance):
    """annex_ec2.gone tells a deleted object from a denial with ListObjectsV2, which AWS
    authorizes as s3:ListBucket.  moto 5.2.6 asks for s3:ListObjectsV2."""
    assert as_the_instance("list_objects_v2", Prefix="config-a.tar.gz", MaxKeys=1) == "ok"
