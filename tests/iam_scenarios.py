"""Every principal of condor-annexd driven through its scenarios against the emulator, with
moto's recorder on: the ground truth of which AWS calls each one makes.

Each principal signs with an access key of its own, so one recording serves them all:

* the daemon acting with a user's key files (creates of every kind, status, extend, off,
  rollback);
* the daemon's own identity (recovery of a crashed create, the lease backstop);
* the lease function (each annex kind, before and after its lease, an old Input);
* an annex instance (boot, lease refresh, interruption watch, discovery through a fleet),
  with its role's credentials as EC2 hands them out (each instance a key of its own:
  ``Facts.instance_keys``).

Resource tags are what IAM's ``aws:ResourceTag`` conditions see; the emulator forgets a Spot
Fleet once it is cancelled, so the tags of every resource are noted while it exists.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

from annexd_lambda import lease
from localaws import fixtures
from localaws.eventbridge import LambdaContext
from localaws.fakeimds import FakeImds
from localaws.moto_server import MotoServer
from localaws.pool import BUCKET, REGION, AnnexDaemon, LocalPool
from localaws.recorder import Call, Recorder
from localaws.wait import wait_for

from conftest import EC2_FLEET_CONFIG, LAUNCH_TEMPLATE_CONFIG, SECRET, SPOT_CONFIG
from instance_side import instance_env, run_annex_ec2
from test_identity import with_identity_files

ACCOUNT = "123456789012"
USER_KEY = "AKIAEXAMPLELOCAL"          # what LocalPool writes into the user's key file
DAEMON_KEY = "AKIADAEMONLOCAL0"         # what test_identity.with_identity_files writes
LEASE_KEY = "AKIALEASEFUNCTION"
INSTANCE_KEY = "AKIAINSTANCEROLE"
SETUP_KEY = "AKIASETUPADMIN00"
SETUP_REGION = "us-west-2"
#: cfn/setup-role.json's role: -setup's stacks run as it (ANNEX_SETUP_SERVICE_ROLE_ARN).
SETUP_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/HTCondorAnnex-SetupRole"  # its own region: -setup makes all four stacks there
OLDER_STACK = "HTCondorAnnex-InstanceProfile"
PRINCIPALS = {USER_KEY: "user", DAEMON_KEY: "daemon", LEASE_KEY: "lease function",
              INSTANCE_KEY: "instance", SETUP_KEY: "setup"}
AMI = fixtures.WORKER_IMAGE


@dataclass
class Facts:
    """What the evaluator needs besides the calls: who is who, and what was tagged how."""

    bucket: str = BUCKET
    lease_arn: str = ""
    profile_arn: str = ""
    instance_role_arn: str = ""
    lease_role_arn: str = ""
    #: resource ID (i-..., sfr-..., fleet-...) -> its tags
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    #: instance profile ARN -> the ARN of its role
    profile_roles: dict[str, str] = field(default_factory=dict)
    #: launch template ID or name -> the instance profile it names ("" for none)
    template_profiles: dict[str, str] = field(default_factory=dict)
    #: the access key of each instance's role credentials -> that session's aws:userid
    #: (``<role-id>:<instance-id>``, as EC2 names an instance role's sessions)
    instance_keys: dict[str, str] = field(default_factory=dict)
    #: launch template name -> its ID
    template_ids: dict[str, str] = field(default_factory=dict)


@dataclass
class Recording:
    #: every call of every principal, in the order the emulator received them
    calls: list[Call]
    facts: Facts
    outcomes: dict[str, Any]

    def of(self, key: str) -> list[Call]:
        return [call for call in self.calls if call.key_id == key]


def _clients(url: str, key: str = "testing") -> dict[str, Any]:
    import boto3
    return {name: boto3.client(name, endpoint_url=url, region_name=REGION,
                               aws_access_key_id=key, aws_secret_access_key="testing")
            for name in ("ec2", "events", "s3", "lambda", "iam", "cloudformation")}


def note_tags(ec2: Any, facts: Facts) -> None:
    """Remember the tags of every instance and fleet there is now."""
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                facts.tags[instance["InstanceId"]] = _tags(instance)
    for fleet in ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]:
        facts.tags[fleet["SpotFleetRequestId"]] = _tags(fleet)
    for fleet in ec2.describe_fleets()["Fleets"]:
        facts.tags[fleet["FleetId"]] = _tags(fleet)
    for template in ec2.describe_launch_templates()["LaunchTemplates"]:
        facts.tags[template["LaunchTemplateId"]] = _tags(template)
        facts.template_ids[template["LaunchTemplateName"]] = template["LaunchTemplateId"]
    # moto's DescribeLaunchTemplates leaves out tags added later; DescribeTags has them.
    for tag in ec2.describe_tags(Filters=[{"Name": "resource-type",
                                           "Values": ["launch-template"]}])["Tags"]:
        facts.tags.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag["Value"]


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or ()}


def _config(tmp: str, example: str, name: str, **changes: Any) -> str:
    with open(example, encoding="utf-8") as handle:
        config = json.load(handle)
    config.update(changes)
    path = os.path.join(tmp, f"{name}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    return path


class Scenarios:
    """The scenarios, in an order where each finds what it needs."""

    def __init__(self, server: MotoServer, root: str):
        self.url, self.root, self.server = server.url, root, server
        self.aws = _clients(self.url)
        self.facts = Facts()
        self.outcomes: dict[str, Any] = {}
        self.credentials: dict[str, dict[str, str]] = {}  # instance ID -> its role's
        self.pool = LocalPool(os.path.join(root, "pool"))

    # -- the world -setup leaves behind -------------------------------------------------
    def prepare(self) -> None:
        fixtures.create_bucket(self.aws["s3"], BUCKET, REGION)
        self.facts.lease_arn = fixtures.deploy_lease_function(self.aws["iam"],
                                                              self.aws["lambda"])
        self.facts.lease_role_arn = self.aws["lambda"].get_function(
            FunctionName=self.facts.lease_arn)["Configuration"]["Role"]
        # What the pool's knobs name for instances to join with (the profile: overridden below).
        join_profile, _ = fixtures.create_join_resources(self.aws["ec2"], self.aws["iam"],
                                                         self.server.seed)
        # The site's template of daemon-paid EC2 Fleets too (ANNEX_DEFAULT_LAUNCH_TEMPLATE),
        # tagged as the administrator tags it: the daemon policy's condition.
        template = fixtures.create_worker_template(self.aws["ec2"])
        self.aws["ec2"].create_tags(Resources=[template], Tags=[
            {"Key": "htcondor:AnnexSiteTemplate", "Value": "true"}])
        note_tags(self.aws["ec2"], self.facts)
        self.facts.profile_roles[join_profile] = self.aws["iam"].get_instance_profile(
            InstanceProfileName=fixtures.JOIN_PROFILE_NAME)["InstanceProfile"]["Roles"][0]["Arn"]
        self.facts.template_profiles[fixtures.WORKER_TEMPLATE] = fixtures.JOIN_PROFILE_ARN
        profile, role = fixtures.create_instance_profile_stack(
            self.aws["cloudformation"], self.aws["iam"], BUCKET)
        self.facts.profile_arn, self.facts.instance_role_arn = profile, role
        self.facts.profile_roles[profile] = role
        self.aws["iam"].create_role(RoleName=fixtures.FLEET_ROLE_ARN.rsplit("/", 1)[1],
                                    AssumeRolePolicyDocument=json.dumps({
                                        "Version": "2012-10-17", "Statement": [{
                                            "Effect": "Allow", "Action": "sts:AssumeRole",
                                            "Principal": {"Service": "spotfleet.amazonaws.com"}}]}))
        os.makedirs(self.pool.root, exist_ok=True)
        self.pool.write(self.url, secret=SECRET, extra="\n".join([
            f"ANNEX_SETUP_SERVICE_ROLE_ARN = {SETUP_ROLE_ARN}",
            f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {self.facts.lease_arn}",
            f"ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN = {profile}",
            # The example fleet config's role: what the daemon's identity may finish (d-rec)
            "ANNEX_DEFAULT_FLEET_ROLE_ARN = "
            "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
            f"ANNEX_DEFAULT_LAUNCH_TEMPLATE = {fixtures.WORKER_TEMPLATE}",
            "ANNEXD_RETRY_BASE_SECONDS = 0.05"]))
        with_identity_files(self.pool)

    def annex(self, *args: str, keys: bool = True) -> subprocess.CompletedProcess:
        return self.pool.condor_annex(*args, keys=keys)

    def create(self, name: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
        made = self.annex("-annex-name", name, "-lease-duration", "3600", *args)
        assert made.returncode == expect, (name, made.stderr)
        note_tags(self.aws["ec2"], self.facts)
        return made

    # -- the daemon with a user's keys --------------------------------------------------
    def user(self) -> None:
        tmp = self.root
        # What a user set up as README says checks first: everything a create will use.
        self.outcomes["check-setup"] = self.annex("-check-setup")
        self.create("u-sf", "-count", "1", SPOT_CONFIG)
        self.create("u-old", "-count", "1", SPOT_CONFIG)
        self.create("u-lt", "-count", "2", _config(tmp, LAUNCH_TEMPLATE_CONFIG, "lt"))
        self.create("u-ec2", "-count", "2", _config(tmp, EC2_FLEET_CONFIG, "ec2"))
        self.create("u-ec2m", "-count", "1", _config(tmp, EC2_FLEET_CONFIG, "ec2m"))
        self.create("u-ec2i", "-count", "1", _config(tmp, EC2_FLEET_CONFIG, "ec2i",
                                                     Type="instant"))
        odi = ["-aws-on-demand-ami-id", AMI, "-aws-on-demand-instance-type", "m5.large"]
        self.create("u-odi", "-count", "1", *odi)
        self.create("u-odi2", "-count", "1", *odi)
        # The same name again (issue 25): a launch added under the annex's lease, for each
        # kind; -off (below) and the lease function end them with the rest.
        self.create("u-odi", "-count", "1", *odi)
        self.create("u-ec2", "-count", "1", _config(tmp, EC2_FLEET_CONFIG, "ec2"))
        self.create("u-sf", "-count", "1", SPOT_CONFIG)
        # Rollbacks: the launch fails (an image AWS does not have) after the lease is in force.
        self.create("u-bad", "-count", "1", "-aws-on-demand-ami-id", "ami-00000000",
                    "-aws-on-demand-instance-type", "m5.large", expect=5)
        self.create("u-badsf", "-count", "1",
                    _config(tmp, SPOT_CONFIG, "bad", LaunchSpecifications=[
                        {"ImageId": "ami-00000000", "InstanceType": "m5.large"}]), expect=5)
        # Fleets someone ended by hand without their instances (cancelled_running,
        # deleted_running): -off here, the lease function later, must end the instances.
        for name in ("u-strag-sf", "u-strag-sf2"):
            self.create(name, "-count", "1", SPOT_CONFIG)
            self.aws["ec2"].cancel_spot_fleet_requests(
                SpotFleetRequestIds=lease.find_fleets(self.aws["ec2"], name),
                TerminateInstances=False)
        for name in ("u-strag-ec2", "u-strag-ec22"):
            # instant: only its instances carry the annex tag (a maintain fleet's carry the
            # launch template's), and IAM lets us end only tagged instances.
            self.create(name, "-count", "1", _config(tmp, EC2_FLEET_CONFIG, name,
                                                     Type="instant"))
            self.aws["ec2"].delete_fleets(FleetIds=lease.find_ec2_fleets(self.aws["ec2"], name),
                                          TerminateInstances=False)
        shown = self.annex("-status", "-json")
        assert shown.returncode == 0, shown.stderr
        self.outcomes["status"] = json.loads(shown.stdout)
        assert self.annex("-status", "-annex-name", "u-sf").returncode == 0
        longer = self.annex("-annex-name", "u-sf", "-lease-duration", "7200")
        assert longer.returncode == 0, longer.stderr
        # An annex with the user's own IDTOKEN: its lease change moves only the object's
        # metadata (CopyObject onto itself), where a minted token is rewritten (PutObject).
        token = os.path.join(tmp, "user.token")
        fd = os.open(token, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("eyJhbGciOiJIUzI1NiIsImtpZCI6IlBPT0wifQ.eyJzdWIiOiJ1In0.c2lnbmF0dXJl\n")
        self.create("u-tok", "-count", "1", "-idtoken-file", token, SPOT_CONFIG)
        longer = self.annex("-annex-name", "u-tok", "-lease-duration", "7200")
        assert longer.returncode == 0, longer.stderr
        for name in ("u-odi", "u-ec2", "u-strag-sf", "u-strag-ec2"):
            off = self.annex("-annex-name", name, "-off")
            assert off.returncode == 0, off.stderr

    # -- -setup, with an administrator's keys ----------------------------------------------
    def setup(self) -> None:
        keys = os.path.join(self.pool.root, "admin-keys")
        os.makedirs(keys, mode=0o700, exist_ok=True)
        for name, text in (("access", SETUP_KEY), ("secret", f"admin-{SECRET}")):
            fd = os.open(os.path.join(keys, name), os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        for run in range(2):  # the second run finds the stacks made and checks them
            if run:  # ... updates a stack from an older template, repairs foreign code
                fixtures.client("lambda", self.url, SETUP_REGION).update_function_code(
                    FunctionName=fixtures.LEASE_FUNCTION_NAME, ZipFile=b"PK not ours")
                stacks = fixtures.client("cloudformation", self.url, SETUP_REGION)
                body = stacks.get_template(StackName=OLDER_STACK)["TemplateBody"]
                stacks.update_stack(StackName=OLDER_STACK, TemplateBody=body.replace(
                    "Description: >-\n", "Description: >-\n  (an older version)\n", 1))
            done = self.annex("-aws-region", SETUP_REGION, "-setup", f"{keys}/access",
                              f"{keys}/secret", keys=False)
            assert done.returncode == 0, done.stderr
        self.outcomes["setup"] = done

    # -- the daemon's own identity ------------------------------------------------------
    def recovery(self) -> None:
        crashing = AnnexDaemon(self.pool, {"ANNEXD_TEST_CRASH_AT":
                                           "EC2 RequestSpotFleet:before"}).start()
        try:
            crashed = self.annex("-annex-name", "d-rec", "-count", "1", "-lease-duration",
                                 "3600", SPOT_CONFIG)
            assert crashing.process.wait(timeout=60) == -signal.SIGKILL
        finally:
            if crashing.process.poll() is None:
                crashing.stop(signal.SIGKILL)
        assert crashed.returncode == 3
        with AnnexDaemon(self.pool):  # recovery runs before the first request is answered
            pass
        note_tags(self.aws["ec2"], self.facts)
        assert lease.find_fleets(self.aws["ec2"], "d-rec"), "recovery did not finish d-rec"

    def backstop(self) -> None:
        with AnnexDaemon(self.pool):
            made = self.annex("-annex-name", "d-back", "-count", "1", "-lease-duration", "2",
                              SPOT_CONFIG)
            assert made.returncode == 0, made.stderr
            note_tags(self.aws["ec2"], self.facts)
        self.pool.add_knobs("ANNEXD_LEASE_CHECK_INTERVAL = 0.5\n")
        with AnnexDaemon(self.pool):
            wait_for(lambda: lease.find_fleets(self.aws["ec2"], "d-back"),
                     "the backstop to end d-back", until=lambda found: not found, timeout=30)

    def auto(self) -> None:
        """Auto annexes, paid by the daemon's identity, on-demand, from a Spot Fleet config
        and from an EC2 Fleet config (the site's launch template): each one's create, one
        order, -off."""
        jobs = os.path.join(self.root, "auto-jobs.ads")
        with open(jobs, "w") as f:
            f.write("\n".join(
                f'ClusterId = 1\nProcId = {number}\nJobStatus = 1\nOwner = "alice"\n'
                f'RequestCpus = 1\nRequestMemory = 1024\nTargetAnnexName = "{name}"\n'
                'Requirements = TARGET.OpSys == "LINUX"\n'
                for number, name in enumerate(("d-auto", "d-autosf", "d-autoec2"))))
        slots = os.path.join(self.root, "auto-slots.ads")
        open(slots, "w").close()
        self.pool.add_knobs("\n".join([
            "ANNEXD_ALLOW_DAEMON_CREDENTIALS = true", "ANNEX_DEMAND_INTERVAL = 0.2",
            f"ANNEX_DEMAND_JOBS = file:{jobs}", f"ANNEX_DEMAND_SLOTS = file:{slots}", ""]))
        with AnnexDaemon(self.pool):
            made = self.annex("-annex-name", "d-auto", "-auto", "-max-instances", "1",
                              "-no-owner", "-lease-duration", "3600",
                              "-aws-on-demand-ami-id", AMI,
                              "-aws-on-demand-instance-type", "m5.large", keys=False)
            assert made.returncode == 0, made.stderr
            made = self.annex("-annex-name", "d-autosf", "-auto", "-max-instances", "1",
                              "-no-owner", "-lease-duration", "3600", SPOT_CONFIG, keys=False)
            assert made.returncode == 0, made.stderr
            made = self.annex("-annex-name", "d-autoec2", "-auto", "-max-instances", "1",
                              "-no-owner", "-lease-duration", "3600", EC2_FLEET_CONFIG,
                              keys=False)
            assert made.returncode == 0, made.stderr
            for name in ("d-auto", "d-autosf", "d-autoec2"):
                wait_for(lambda: lease.find_instances(self.aws["ec2"], name),
                         f"the auto annex {name}'s order", timeout=30)
            note_tags(self.aws["ec2"], self.facts)
            for name in ("d-auto", "d-autosf", "d-autoec2"):
                off = self.annex("-annex-name", name, "-off", keys=False)
                assert off.returncode == 0, off.stderr

    # -- the lease function -------------------------------------------------------------
    def lease_function(self) -> None:
        clients = _clients(self.url, LEASE_KEY)
        mine = lease.Clients(clients["ec2"], clients["events"], clients["s3"])
        results = {}
        for name in ("u-sf", "u-lt", "u-ec2m", "u-ec2i", "u-odi2", "u-old", "u-strag-sf2",
                     "u-strag-ec22"):
            targets = self.aws["events"].list_targets_by_rule(Rule=name)["Targets"]
            event = json.loads(targets[0]["Input"])
            if name == "u-old":  # an Input written before AnnexType existed
                event.pop("AnnexType")
                self.aws["events"].put_targets(Rule=name, Targets=[
                    {**targets[0], "Input": json.dumps(event)}])
            # Before the lease ends it makes no AWS call at all (clients that cannot call).
            nothing = lease.Clients(None, None, None)
            assert lease.handler(event, None, now=lambda: 0, clients=nothing)["expired"] is False
            # Once it has ended, the function confirms it on the annex's own rule.
            context = LambdaContext(targets[0]["Arn"])
            results[name] = lease.handler(event, context, now=lambda: 2**40, clients=mine)
        self.outcomes["lease"] = results

    # -- an annex instance --------------------------------------------------------------
    def instance_env(self, imds: FakeImds, instance_id: str) -> dict[str, str]:
        """The instance's environment, with its role's credentials as EC2 hands them out (a
        session named after the instance); its key is noted as the instance principal's."""
        if instance_id not in self.credentials:  # once: a terminated instance has none
            self.credentials[instance_id] = fixtures.instance_role_credentials(
                self.url, REGION, instance_id)
        credentials = self.credentials[instance_id]
        role_id = self.aws["iam"].get_role(RoleName=self.facts.instance_role_arn.rsplit(
            "/", 1)[1])["Role"]["RoleId"]
        self.facts.instance_keys[credentials["AWS_ACCESS_KEY_ID"]] = f"{role_id}:{instance_id}"
        return instance_env(imds.url, AWS_ENDPOINT_URL=self.url, **credentials)

    def as_aws_launches(self, instance_ids: list[str]) -> None:
        """The setup's instance profile on fleet instances, as AWS shows it (moto shows the
        profile of RunInstances' instances only)."""
        ec2 = self.aws["ec2"]
        for instance_id in instance_ids:
            if not ec2.describe_iam_instance_profile_associations(Filters=[
                    {"Name": "instance-id", "Values": [instance_id]}])[
                        "IamInstanceProfileAssociations"]:
                ec2.associate_iam_instance_profile(
                    IamInstanceProfile={"Arn": self.facts.profile_arn}, InstanceId=instance_id)

    def boot(self, instance_id: str, config_dir: str, *extra: str) -> subprocess.CompletedProcess:
        imds = FakeImds(instance_id, REGION, self.facts.profile_arn)
        try:
            return run_annex_ec2("-config-dir", config_dir, "-retry-base", "0.05",
                                 "-poweroff-command", f"touch {config_dir}.powered-off",
                                 *extra, env=self.instance_env(imds, instance_id))
        finally:
            imds.close()

    def refresh(self, instance_id: str, config_dir: str) -> subprocess.CompletedProcess:
        return self.boot(instance_id, config_dir, "-refresh-lease", "-reconfig-command",
                         f"touch {config_dir}.reconfigured")

    def instances(self) -> None:
        ec2 = self.aws["ec2"]
        results: dict[str, Any] = {}
        tagged = self.booted_sf = lease.find_instances(ec2, "u-sf")[0]
        booted = {"u-sf": tagged}
        for name, fleet in (("u-lt", lease.find_fleets(ec2, "u-lt")),
                            ("u-ec2m", lease.find_ec2_fleets(ec2, "u-ec2m"))):
            booted[name] = fixtures.tag_fleet_instances_as_aws_does(ec2, fleet[0])[0]
        self.as_aws_launches(list(booted.values()))
        note_tags(ec2, self.facts)
        # The daemon copies each annex's object for its instances (with the owner's keys,
        # on a lease change; its renewal pass does it with its own identity).
        with AnnexDaemon(self.pool):
            for name in booted:
                moved = self.annex("-annex-name", name, "-lease-duration", "7200")
                assert moved.returncode == 0, moved.stderr
        results["boot"] = self.boot(tagged, os.path.join(self.root, "i-sf"))
        results["refresh"] = self.refresh(tagged, os.path.join(self.root, "i-sf"))
        results["watch"] = self.boot(tagged, os.path.join(self.root, "i-sf"),
                                     "-watch-interruptions", "-once", "-vacate-command", "true")
        for name in ("u-lt", "u-ec2m"):
            results[f"boot {name}"] = self.boot(booted[name],
                                                os.path.join(self.root, f"i-{name}"))
        self.outcomes["instance"] = results

    def instances_after_the_lease(self) -> None:
        tagged = self.booted_sf  # the instance that booted (u-sf has two launches)
        self.outcomes["instance"]["refresh gone"] = self.refresh(
            tagged, os.path.join(self.root, "i-sf"))
        self.outcomes["instance"]["boot gone"] = self.boot(
            tagged, os.path.join(self.root, "i-gone"), "-max-wait", "1")

    def run(self) -> Recording:
        self.prepare()
        with Recorder(self.url) as recorder:
            with AnnexDaemon(self.pool):
                self.user()
            self.recovery()
            self.backstop()
            self.auto()
            self.instances()
            self.lease_function()
            self.instances_after_the_lease()
            with AnnexDaemon(self.pool):  # last: it makes its region the user's default
                self.setup()
        return Recording(recorder.calls(), self.facts, self.outcomes)


def record_everything(server: MotoServer, root: str) -> Recording:
    server.reset()
    return Scenarios(server, root).run()
