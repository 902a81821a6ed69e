"""Shared fixtures: a real moto server, a real HTCondor config, a real condor_annexd process."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from annexd.config import knobs
from annexd_lambda import lease
from localaws import fixtures
from localaws.eventbridge import LambdaContext, lambda_environment
from localaws.forkserver import ForkServer
from localaws.moto_server import MotoServer
from localaws.pool import (BUCKET, REGION, AnnexDaemon, LocalPool, run_program, script,
                           use_fork_server)

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
SPOT_CONFIG = os.path.join(EXAMPLES, "spot-fleet.json")
WRAPPED_CONFIG = os.path.join(EXAMPLES, "spot-fleet-wrapped.json")
LAUNCH_TEMPLATE_CONFIG = os.path.join(EXAMPLES, "spot-fleet-launch-template.json")
EC2_FLEET_CONFIG = os.path.join(EXAMPLES, "ec2-fleet.json")

#: Written to every secret key file; tests assert it never shows up anywhere else.
SECRET = f"SeCrEt-{uuid.uuid4().hex}"

logging.getLogger("werkzeug").setLevel(logging.ERROR)


@dataclass
class Aws:
    """Test-side view of the emulator: clients, plus what -setup would have created."""

    url: str
    ec2: Any
    events: Any
    s3: Any
    lambda_: Any
    iam: Any
    cloudformation: Any
    lease_arn: str = ""

    def annex_resources(self, annex_id: str, bucket: str = BUCKET) -> dict[str, list[str]]:
        """Everything AWS holds for the annex, by kind (all empty when it is gone)."""
        rules = [r["Name"] for r in self.events.list_rules(NamePrefix=annex_id)["Rules"]
                 if r["Name"] == annex_id]
        try:  # the rule may go between the two calls (a lease tick, a rollback)
            targets = [t["Id"] for t in
                       self.events.list_targets_by_rule(Rule=annex_id)["Targets"]] \
                if rules else []
        except self.events.exceptions.ResourceNotFoundException:
            rules, targets = [], []
        objects = self.annex_objects(annex_id, bucket)  # read in the order it always was
        return {"fleets": lease.find_fleets(self.ec2, annex_id) +
                lease.find_ec2_fleets(self.ec2, annex_id),
                "instances": lease.find_instances(self.ec2, annex_id),
                "rules": rules, "targets": targets, **objects}

    def annex_objects(self, annex_id: str, bucket: str = BUCKET) -> dict[str, list[str]]:
        """The annex's config objects and its instances' copies, from one bucket listing (the
        key lookups below need no more than that: a renewal test asks 191 times)."""
        keys = [o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return {"objects": [key for key in keys if config_of(key) == annex_id],
                "copies": [key for key in keys if copy_of(key) == annex_id]}

    def config_key(self, annex_id: str, bucket: str = BUCKET) -> str:
        """The key of the annex's one config object."""
        [key] = self.annex_objects(annex_id, bucket)["objects"]
        return key

    def copy_key(self, annex_id: str, instance_id: str, bucket: str = BUCKET) -> str:
        """The key of the daemon's copy of the annex's config object for one instance."""
        [key] = [key for key in self.annex_objects(annex_id, bucket)["copies"]
                 if key.endswith(f":{instance_id}.tar.gz")]
        return key

    def copy_for(self, annex_id: str, instance_id: str, bucket: str = BUCKET) -> str:
        """Stand in for the daemon's copy for an instance it cannot know (one of a fleet a
        test made by hand): the annex's object copied to the instance's key; that key."""
        [reservation] = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        profile = reservation["Instances"][0]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
        role = self.iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"][
            "Roles"][0]["RoleId"]
        source = self.config_key(annex_id, bucket)
        key = lease.instance_config_key(source, f"{role}:{instance_id}")
        self.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": source})
        return key

    def end_config(self, annex_id: str, bucket: str = BUCKET) -> None:
        """Delete the annex's config object and its instances' copies, as its lease does."""
        held = self.annex_objects(annex_id, bucket)
        for key in held["objects"] + held["copies"]:
            self.s3.delete_object(Bucket=bucket, Key=key)

    def all_fleets(self) -> list[dict[str, Any]]:
        return self.ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]

    def target_input(self, annex_id: str) -> dict[str, Any]:
        targets = self.events.list_targets_by_rule(Rule=annex_id)["Targets"]
        assert len(targets) == 1
        return json.loads(targets[0]["Input"])


#: A config object's key: ``config-<owner>/<region>-<name>_<uuid>.tar.gz`` (one request's;
#: ``config-<region>-...`` without the owner's prefix in earlier releases), or
#: ``config-<name>.tar.gz`` (an annex of an earlier release still).
CONFIG_KEY = re.compile(r"config-(?:(?:[A-Za-z0-9:_+=,.@-]+/)?[a-z]+-[a-z]+-[0-9]+-"
                        r"(?P<name>[A-Za-z0-9-]+)_[0-9a-f-]{36}|(?P<old>[A-Za-z0-9-]+))"
                        r"\.tar\.gz")


def config_of(key: str) -> str | None:
    """The annex name a config object's key names, if it is one."""
    match = CONFIG_KEY.fullmatch(key)
    return None if match is None else match.group("name") or match.group("old")


def copy_of(key: str) -> str | None:
    """The annex name an instance's copy of a config object names, if it is one
    (``<config key without .tar.gz>/i/<aws:userid>.tar.gz``)."""
    head, found, user_id = key.rpartition("/i/")
    if not found or "/" in user_id or not user_id.endswith(".tar.gz"):
        return None
    return config_of(f"{head}.tar.gz")


@pytest.fixture(scope="session", autouse=True)
def fork_server():
    """Every AnnexDaemon and run_program of the session is forked from one Python that has
    imported boto3 and classad2 already (localaws.forkserver: 0.35 s of CPU less per daemon
    start, 0.065 s per condor_annex run, a few hundred of the one and of the other).
    ANNEX_TESTS_EXEC=1 starts each in a new interpreter instead, as before."""
    if os.environ.get("ANNEX_TESTS_EXEC"):
        yield None
        return
    server = ForkServer()
    use_fork_server(server)
    yield server
    use_fork_server(None)
    server.close()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with MotoServer(log_path=str(log)) as server:
        # The first EC2 call initialises moto's EC2 backend (about a second); pay it once.
        fixtures.client("ec2", server.url, REGION).describe_instances()
        yield server


@pytest.fixture
def empty_aws(moto_server: MotoServer) -> Aws:
    """A clean emulator, before any setup."""
    moto_server.reset()
    url = moto_server.url
    return Aws(url, *(fixtures.client(name, url, REGION)
                      for name in ("ec2", "events", "s3", "lambda", "iam", "cloudformation")))


@pytest.fixture
def aws(empty_aws: Aws, moto_server: MotoServer) -> Aws:
    """A clean emulator holding what -setup makes: the configuration bucket, the lease
    function, and the instance profile and security group the pools' knobs name."""
    state = empty_aws
    fixtures.create_bucket(state.s3, BUCKET, REGION)
    state.lease_arn = fixtures.deploy_lease_function(state.iam, state.lambda_)
    fixtures.create_join_resources(state.ec2, state.iam, moto_server.seed)
    return state


@pytest.fixture(scope="module")
def pool(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> LocalPool:
    return LocalPool(str(tmp_path_factory.mktemp("pool"))).write(moto_server.url, secret=SECRET)


@pytest.fixture(scope="module")
def daemon(pool: LocalPool):
    with AnnexDaemon(pool) as running:
        yield running
    assert running.process is not None and running.process.returncode == 0


def serving_pool(aws: Aws, moto_server: MotoServer, root: str, *knobs: str):
    """A daemon on a pool in ``root`` whose default lease function is ``aws``'s, with
    ``knobs`` added; yields the pool while the daemon serves (for a fixture)."""
    pool = LocalPool(root).write(moto_server.url, secret=SECRET, extra="\n".join([
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}", *knobs]))
    with AnnexDaemon(pool):
        yield pool


@pytest.fixture
def shared_pool(moto_server: MotoServer, aws: Aws):
    """A pool whose socket other users can reach (pytest's tmp dirs are 0700)."""
    root = tempfile.mkdtemp(prefix="annex-shared-")
    os.chmod(root, 0o755)
    pool = LocalPool(root).write(moto_server.url, secret=SECRET,
                                 extra=f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}")
    yield pool
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def run_annex(pool: LocalPool, daemon: AnnexDaemon) -> Callable[..., subprocess.CompletedProcess]:
    """Run the real condor_annex against the module's daemon."""
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return run_program([script("condor_annex"), *args], pool.env(), input=stdin, timeout=120)
    return run


@pytest.fixture
def with_keys(pool: LocalPool) -> list[str]:
    return ["-public-key-file", pool.access_key_file, "-secret-key-file", pool.secret_key_file]


@pytest.fixture
def fire_lease(aws: Aws):
    """Deliver a rule target's Input to the lease handler, as EventBridge would, at ``now``
    (Lambda's context names the suite's lease function)."""
    def fire(event: dict[str, Any], now: float) -> dict[str, Any]:
        with lambda_environment(aws.url, REGION):
            return lease.handler(event, LambdaContext(aws.lease_arn), now=lambda: now)
    return fire


@pytest.fixture
def condor_config(tmp_path, monkeypatch):
    """Write a config file, point CONDOR_CONFIG at it, and make htcondor2 re-read it."""
    def write(text: str) -> None:
        path = tmp_path / "condor_config"
        path.write_text(f"LOCAL_DIR = {tmp_path}\nLOCK = $(LOCAL_DIR)/lock\n"
                        f"SPOOL = $(LOCAL_DIR)/spool\n{text}\n")
        monkeypatch.setenv("CONDOR_CONFIG", str(path))
        knobs.reload()
    yield write
    monkeypatch.undo()
    knobs.reload()


@dataclass(frozen=True)
class CfnLint:
    """One run of cfn-lint over every template the tests lint (:func:`cfn_lint`)."""
    findings: dict[str, list[str]]
    generated: subprocess.CompletedProcess  # condor_annex_role_template's run
    generated_path: str
    broken: str                             # a template with one finding, linted alongside


@pytest.fixture(scope="session")
def cfn_lint(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> CfnLint:
    """cfn-lint's findings for cfn/'s four templates, -setup's role, a generated annex role
    and a known-bad template, from one run per test session: each run of the command spends
    about 2 s loading its rules and schemas whatever it lints (tests/test_cfn.py), more in a
    fresh checkout (its first imports compile sympy).  pytest-xdist's workers share the run
    through their session's directory: the first to ask runs it, under a lock, and the
    others read its findings."""
    if worker_id == "master":  # one process: nobody to share with
        return _lint_everything(str(tmp_path_factory.mktemp("cfn-lint")))
    shared = tmp_path_factory.getbasetemp().parent  # this session's, the workers' parent
    with open(shared / "cfn-lint.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "cfn-lint.json"
        if done.exists():
            saved = json.loads(done.read_text(encoding="utf-8"))
            return CfnLint(saved["findings"], subprocess.CompletedProcess(**saved["generated"]),
                           saved["generated_path"], saved["broken"])
        directory = shared / "cfn-lint"
        directory.mkdir()
        found = _lint_everything(str(directory))
        generated = found.generated
        done.write_text(json.dumps({
            "findings": found.findings, "generated_path": found.generated_path,
            "broken": found.broken, "generated": {
                "args": generated.args, "returncode": generated.returncode,
                "stdout": generated.stdout, "stderr": generated.stderr}}), encoding="utf-8")
        return found


def _lint_everything(directory: str) -> CfnLint:
    from test_cfn import BROKEN, SETUP_ROLE, TEMPLATES, generate_role, lint_all
    generated, generated_path = generate_role(directory)
    broken = os.path.join(directory, "broken.yaml")
    with open(broken, "w", encoding="utf-8") as handle:
        handle.write(BROKEN)
    findings = lint_all([*TEMPLATES, SETUP_ROLE, generated_path, broken])
    return CfnLint(findings, generated, generated_path, broken)
