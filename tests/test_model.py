"""A stateful model of condor_annexd against the moto server, hunting for sequences nobody wrote.

Two users (real other uids), two regions, and the operations of an annex's life: create (good or
failing config), repeat, extend, off, status, kill -9 at any AWS call followed by a restart
with or without the daemon's own identity, plain restarts, and lease ticks after expiry.
After every step the invariants the daemon promises are checked against AWS and the journal:

* nothing of an annex (fleet, instance, config object) exists without a live lease (rule and
  target, in its region) *of its own request*: the rule's description and the target's Input
  name the ClientToken the fleet, instance and object carry;
* at most one live fleet per launch of an annex (its create, and each launch the same name
  again added under its lease);
* everything in AWS belongs to a live journal row (no orphan the daemon forgot);
* no user sees, changes or ends another user's annex; a live annex is never hidden from root;
* no annex, and no user, runs more instances than ANNEX_MAX_INSTANCES, and none may cost more
  (its worst case, as -status -json shows it) than ANNEX_MAX_COST and, together,
  ANNEX_MAX_COST_PER_USER -- with Spot Fleets weighted below 1 (a capacity unit is four
  instances) and above 1 (one instance holds four units) next to unweighted ones;
* -status agrees with AWS: each lease it shows in force, expired or missing is what the rule's
  target holds (its LeaseExpiration), after any step -- kill -9 inside a lease change
  included -- on its first call.

Every operation runs with the owner's -status at once (a read must never end, claim or
mislead).  Operations also run at once, as users and the daemon's own threads make them: -off with the
owner's repeat of the create (a resume), -off with a lease change, -off with the daemon's
lease backstop, and a lease change with the lease function's tick at expiry.  The two regions
share one configuration bucket.

At the end every lease is made to expire and ticks once: then nothing of any annex remains.

The run in the suite is deterministic and bounded (``ANNEX_MODEL_EXAMPLES``, 7, x
``ANNEX_MODEL_STEPS``, 15); raise both, and set ``ANNEX_MODEL_RANDOM=1``, to explore further
(with ``--timeout 0``: such a run outlasts the suite's per-test limit).  Which sequences the
deterministic run draws follows this file's source: after an edit, the test's last check
(every operation ran) may need more examples.  Seven were needed after the checks were made
to share one reading of AWS per step; with five, that edit's sequences found the lease
hole :func:`annexd.commands.grow._lease_in_force` closes (tests/test_grow.py keeps it).
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import shutil
import signal
import sqlite3
import tempfile
import time
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, rule,
                                 run_state_machine_as_test)

from annexd.launch.base import ORDER_TAG
from annexd_lambda import lease
from condor_annex import client
from localaws import fixtures
from localaws.pool import AnnexDaemon, LocalPool
from localaws.wait import wait_for

from conftest import EC2_FLEET_CONFIG, SECRET, SPOT_CONFIG
from test_daemon_boundary import as_other_user
from test_recovery import FORWARD_CALLS, UNDO_CALLS

REGIONS = ("us-east-1", "us-west-2")
BUCKET = "htcondor-annex-config"  # one bucket for both regions
USERS = {54341: "alice", 54342: "bob"}
NAMES = ("m-a", "m-b")
#: The EC2 Fleet kind's own calls: its launch, and its undo's look-up and delete.
EC2_FLEET_CALLS = ["EC2 CreateFleet", "EC2 DescribeFleets", "EC2 DeleteFleets"]
CRASH_POINTS = [f"{call}:{when}" for call in FORWARD_CALLS + UNDO_CALLS + EC2_FLEET_CALLS
                for when in ("before", "after")]
#: A lease change's calls: its reads, the target's Input, the object.
LEASE_CHANGE_POINTS = [f"{call}:{when}" for call in (
    "EventBridge DescribeRule", "EventBridge ListTargetsByRule", "EventBridge PutTargets",
    "S3 GetObject", "S3 PutObject", "S3 CopyObject")
    for when in ("before", "after")]
#: The states whose lease -status must show as AWS holds it, on its first call.
SHOWN_AS_HELD = ("active", "rollback-incomplete", "interrupted")
#: The caps the daemon runs with: a quarter-weighted annex of one unit is four instances.
MAX_INSTANCES, MAX_COST, MAX_COST_PER_USER = 5, 1.0, 1.5
IDENTITY = {"AWS_ACCESS_KEY_ID": "daemon", "AWS_SECRET_ACCESS_KEY": "daemon-secret"}
USER_KEYS = {"access_key_id": "AKIAUSER", "secret_access_key": "user-secret"}
LIVE_FLEET = ("submitted", "active", "modifying")

with open(SPOT_CONFIG, encoding="utf-8") as _handle:
    GOOD_CONFIG = json.load(_handle)
BAD_CONFIG = json.loads(json.dumps(GOOD_CONFIG))
BAD_CONFIG["LaunchSpecifications"][0]["ImageId"] = "ami-00000000"  # RequestSpotFleet fails
with open(EC2_FLEET_CONFIG, encoding="utf-8") as _handle:
    EC2_CONFIG = json.load(_handle)
EC2_BAD = {**EC2_CONFIG, "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": {
    "LaunchTemplateName": "no-such-template", "Version": "$Default"}}]}  # CreateFleet fails


def _weighted(config: dict[str, Any], weight: float) -> dict[str, Any]:
    copied = json.loads(json.dumps(config))
    for spec in copied["LaunchSpecifications"]:
        spec["WeightedCapacity"] = weight
    return copied


#: kind -> (good config, config its launch call refuses)
CONFIGS = {
    "spot-fleet": (GOOD_CONFIG, BAD_CONFIG),
    "spot-fleet-weight-0.25": (_weighted(GOOD_CONFIG, 0.25), _weighted(BAD_CONFIG, 0.25)),
    "spot-fleet-weight-4": (_weighted(GOOD_CONFIG, 4), _weighted(BAD_CONFIG, 4)),
    "ec2-fleet-maintain": (EC2_CONFIG, EC2_BAD),
    "ec2-fleet-instant": ({**EC2_CONFIG, "Type": "instant"}, {**EC2_BAD, "Type": "instant"}),
}
LIVE_EC2_FLEET = ("submitted", "active", "modifying")

WORLD: dict[str, Any] = {}  # the moto server, set by the test before the machine runs
TALLY: collections.Counter[str] = collections.Counter()  # steps run, by operation
CREATED: collections.Counter[str] = collections.Counter()  # creates answered, by kind and outcome


class AnnexModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        server = WORLD["moto"]
        server.reset()
        self.url = server.url
        if "clients" not in WORLD:  # made once: botocore clients are costly to make
            WORLD["clients"] = {region: {name: fixtures.client(name, self.url, region)
                                         for name in ("ec2", "events", "s3", "iam", "lambda")}
                                for region in REGIONS}
        self.clients = WORLD["clients"]
        east, west = (self.clients[region] for region in REGIONS)
        fixtures.create_bucket(east["s3"], BUCKET, REGIONS[0])
        for region in REGIONS:
            fixtures.create_worker_template(self.clients[region]["ec2"])
        self.arns = {"us-east-1": fixtures.deploy_lease_function(east["iam"], east["lambda"])}
        role = east["iam"].get_role(RoleName="HTCondorAnnex-LeaseFunction-Role")["Role"]["Arn"]
        self.arns["us-west-2"] = west["lambda"].create_function(  # IAM is global
            FunctionName="HTCondorAnnex-LeaseFunction", Runtime="python3.12", Role=role,
            Handler="lease.handler", Code={"ZipFile": b"PK"})["FunctionArn"]
        self.root = tempfile.mkdtemp(prefix="annex-model-")
        os.chmod(self.root, 0o755)
        self.pool = LocalPool(self.root).write(self.url, secret=SECRET, bucket=BUCKET,
                                               extra="\n".join([
            "ANNEXD_RETRY_BASE_SECONDS = 0.05",
            f"ANNEX_MAX_INSTANCES = {MAX_INSTANCES}", f"ANNEX_MAX_COST = {MAX_COST}",
            f"ANNEX_MAX_COST_PER_USER = {MAX_COST_PER_USER}",
            "ANNEXD_LEASE_CHECK_INTERVAL = 0.2"]))  # the backstop: only expired leases
        self.daemon = AnnexDaemon(self.pool, self._env(identity=True)).start()

    # -- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _env(identity: bool, crash_at: str | None = None) -> dict[str, str]:
        env = dict(IDENTITY) if identity else {}
        if crash_at:
            env["ANNEXD_TEST_CRASH_AT"] = crash_at
        return env

    def _restart(self, identity: bool, crash_at: str | None = None, sig: int = signal.SIGTERM):
        """Stop the daemon (if it still runs) and start another; raises RuntimeError if the
        new one dies before it answers (a crash point hit while recovering)."""
        if self.daemon.process.poll() is None:
            self.daemon.stop(sig)
        starting = AnnexDaemon(self.pool, self._env(identity, crash_at))
        self.daemon = starting
        starting.start()

    def _send(self, uid: int, message: dict[str, Any]) -> dict[str, Any]:
        """Send one command; every command but -status goes with the caller's -status at
        once, which must answer, and never with an internal error."""
        if message["command"] == "status":
            return self._send_one(uid, message)
        with concurrent.futures.ThreadPoolExecutor(1) as reading:
            looking = reading.submit(self._send_one, uid, {"command": "status",
                                                           "credentials": USER_KEYS})
            reply = self._send_one(uid, message)
            assert looking.result()["ok"], looking.result()
        return reply

    def _send_one(self, uid: int, message: dict[str, Any]) -> dict[str, Any]:
        reply = as_other_user(self.pool.socket_path, {"version": 1, **message}, uid=uid)
        assert "connect_error" not in reply, reply
        assert reply.get("ok") or reply["error"]["kind"] != "internal", reply
        return reply

    def _live_rows(self) -> list[dict[str, Any]]:
        """The journal's live annexes, as root sees them (every one of them)."""
        return client.call(self.pool.socket_path, {"version": 1, "command": "list"})[
            "result"]["annexes"]

    def _owner(self, region: str, name: str) -> int | None:
        for row in self._live_rows():
            if (row["region"], row["name"]) == (region, name):
                return row["owner"]
        return None

    def _held(self, region: str) -> dict[str, dict[str, Any]]:
        """Per annex name: what AWS holds of it in ``region``, with the ClientTokens of its
        fleets, instances and objects (``tokens``) and of its lease (``lease_tokens``: the
        rule's description and the target's Input)."""
        aws, held = self.clients[region], {}

        def add(name: str, kind: str, item: str, token: str | None = None) -> None:
            entry = held.setdefault(name, {"fleets": [], "instances": [], "objects": [],
                                           "rules": [], "targets": [], "tokens": set(),
                                           "lease_tokens": set(), "launches": []})
            entry[kind].append(item)
            entry["lease_tokens" if kind in ("rules", "targets") else "tokens"].add(token)

        def add_fleet(tags: dict[str, str], fleet_id: str) -> None:
            """A fleet, and the launch it is (its launch tag; none: the create's own)."""
            add(tags[lease.ANNEX_TAG], "fleets", fleet_id, tags.get(lease.CLIENT_TOKEN_TAG))
            held[tags[lease.ANNEX_TAG]]["launches"].append(tags.get(ORDER_TAG))

        for fleet in aws["ec2"].describe_spot_fleet_requests()["SpotFleetRequestConfigs"]:
            tags = {t["Key"]: t["Value"] for t in fleet.get("Tags", [])}
            if fleet["SpotFleetRequestState"] in LIVE_FLEET and lease.ANNEX_TAG in tags:
                add_fleet(tags, fleet["SpotFleetRequestId"])
        for fleet in aws["ec2"].describe_fleets()["Fleets"]:
            tags = {t["Key"]: t["Value"] for t in fleet.get("Tags", [])}
            if fleet["FleetState"] in LIVE_EC2_FLEET and lease.ANNEX_TAG in tags:
                token = tags.get(lease.CLIENT_TOKEN_TAG)
                add_fleet(tags, fleet["FleetId"])
                if fleet["Type"] != "instant":  # instances from the template: not tagged
                    for instance in aws["ec2"].describe_fleet_instances(
                            FleetId=fleet["FleetId"])["ActiveInstances"]:
                        add(tags[lease.ANNEX_TAG], "instances", instance["InstanceId"], token)
        for reservation in aws["ec2"].describe_instances(Filters=[
                {"Name": "instance-state-name", "Values": lease.LIVE_INSTANCE_STATES}])[
                "Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                if lease.ANNEX_TAG in tags:
                    add(tags[lease.ANNEX_TAG], "instances", instance["InstanceId"],
                        tags.get(lease.CLIENT_TOKEN_TAG))
        prefix = f"config-{region}-"  # the bucket is shared: the key names the region
        for item in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", []):
            key = item["Key"]
            if key.startswith(prefix) and key.endswith(".tar.gz"):
                token = key[len(prefix):-len(".tar.gz")]
                add(token.rsplit("_", 1)[0], "objects", key, token)
        for found in aws["events"].list_rules()["Rules"]:
            name = found["Name"]
            add(name, "rules", name, found.get("Description", "").partition(
                "(request ")[2].rstrip(")") or None)
            targets = aws["events"].list_targets_by_rule(Rule=name)["Targets"]
            # The lease end its (first) target holds, None without one: as _leases reads it.
            held[name]["lease_end"] = json.loads(targets[0]["Input"])["LeaseExpiration"] \
                if targets else None
            for target in targets:
                add(name, "targets", target["Id"],
                    json.loads(target.get("Input", "{}")).get("ClientToken"))
        return held

    def _concurrently(self, *sends: tuple[int, dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the messages at once, as several users' (or one user's) commands would."""
        with concurrent.futures.ThreadPoolExecutor(len(sends)) as running:
            return list(running.map(lambda send: self._send(*send), sends))

    def _set_lease_end(self, region: str, name: str, lease_end: int) -> None:
        """Time passes for one annex: its lease end, in AWS (the target's Input) and in the
        journal, becomes ``lease_end``."""
        events = self.clients[region]["events"]
        try:
            targets = events.list_targets_by_rule(Rule=name)["Targets"]
        except events.exceptions.ResourceNotFoundException:
            targets = []
        for target in targets:
            moved = dict(json.loads(target["Input"]), LeaseExpiration=lease_end)
            events.put_targets(Rule=name, Targets=[{**target, "Input": json.dumps(moved)}])
        with sqlite3.connect(self.pool.journal_file, timeout=30) as db:
            db.execute("UPDATE requests SET lease_end = ? WHERE region = ? AND annex_id = ?"
                       " AND state IN ('active', 'rollback-incomplete', 'interrupted',"
                       " 'rollback-interrupted', 'ending-interrupted')",
                       (lease_end, region, name))

    def _message(self, region: str, name: str, bad: bool, uid: int,
                 kind: str, count: int = 1) -> dict[str, Any]:
        return {"command": "create", "credentials": USER_KEYS, "annex": {
            "name": name, "region": region, "lease_duration": 3600, "count": count,
            "lease_function_arn": self.arns[region], "owners": [USERS[uid]],
            "fleet_config": CONFIGS[kind][bad]}}

    # -- operations ----------------------------------------------------------------------

    @initialize(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
                kind=st.sampled_from(["spot-fleet-weight-0.25", "spot-fleet-weight-4"]),
                count=st.sampled_from([1, 2]))
    def weighted(self, uid: int, region: str, kind: str, count: int) -> None:
        """Every run starts with a weighted fleet against the caps: a quarter-weighted one
        of one unit runs four instances (two units: eight, refused), one weighted 4 runs one."""
        self.create(uid, region, NAMES[0], False, kind, count)

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES), bad=st.sampled_from([False, False, True]),
          kind=st.sampled_from(sorted(CONFIGS)), count=st.sampled_from([1, 1, 2]))
    def create(self, uid: int, region: str, name: str, bad: bool, kind: str,
               count: int) -> None:
        """Create, or repeat a create of, an annex (of one or two capacity units)."""
        TALLY["create"] += 1
        owner = self._owner(region, name)
        reply = self._send(uid, self._message(region, name, bad, uid, kind, count))
        CREATED[f"{kind} x{count}: " + ("ok" if reply["ok"] else reply["error"]["message"][:90])
                ] += 1
        if owner is not None and owner != uid:
            assert reply["ok"] is False and "belongs to another user" in \
                reply["error"]["message"], reply
        assert self.daemon.process.poll() is None

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES), bad=st.booleans(),
          point=st.sampled_from(CRASH_POINTS), identity=st.booleans(),
          kind=st.sampled_from(sorted(CONFIGS)))
    def create_then_kill(self, uid: int, region: str, name: str, bad: bool, point: str,
                         identity: bool, kind: str) -> None:
        """kill -9 at an AWS call of a create; restart with or without the daemon's identity."""
        TALLY["create_then_kill"] += 1
        try:
            self._restart(identity=True, crash_at=point)
        except RuntimeError:  # it died recovering a parked request: kill -9 during recovery
            self._restart(identity=identity)
            return
        reply = as_other_user(self.pool.socket_path,
                              {"version": 1, **self._message(region, name, bad, uid, kind)},
                              uid=uid,
                              allow_no_reply=True)
        if reply:  # an answer: the crash point was never reached (else it died: no answer)
            assert reply.get("ok") or reply["error"]["kind"] != "internal", reply
        self._restart(identity=identity, sig=signal.SIGKILL)

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES))
    def extend(self, uid: int, region: str, name: str) -> None:
        TALLY["extend"] += 1
        owner = self._owner(region, name)
        before = self._held(region).get(name)
        reply = self._send(uid, {"command": "extend", "name": name, "region": region,
                                 "lease_duration": 7200, "credentials": USER_KEYS})
        if owner != uid:
            assert reply["ok"] is False, reply
            assert self._held(region).get(name) == before

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES), point=st.sampled_from(LEASE_CHANGE_POINTS),
          identity=st.booleans())
    def extend_then_kill(self, uid: int, region: str, name: str, point: str,
                         identity: bool) -> None:
        """kill -9 at an AWS call of a lease change; restart with or without the daemon's
        identity.  (A restore's calls are in tests/test_lease_change_intent.py: its lease
        removed by hand first would itself break nothing_escapes_its_lease.)"""
        TALLY["extend_then_kill"] += 1
        try:
            self._restart(identity=True, crash_at=point)
        except RuntimeError:  # it died recovering: kill -9 during recovery
            self._restart(identity=identity)
            return
        reply = as_other_user(self.pool.socket_path, {
            "version": 1, "command": "extend", "name": name, "region": region,
            "lease_duration": 5400, "credentials": USER_KEYS}, uid=uid, allow_no_reply=True)
        if reply:  # an answer: the crash point was never reached
            assert reply.get("ok") or reply["error"]["kind"] != "internal", reply
        self._restart(identity=identity, sig=signal.SIGKILL)

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES))
    def off(self, uid: int, region: str, name: str) -> None:
        TALLY["off"] += 1
        owner = self._owner(region, name)
        before = self._held(region).get(name)
        reply = self._send(uid, {"command": "off", "name": name, "region": region,
                                 "credentials": USER_KEYS})
        if owner is not None and owner != uid:
            # Refused -- or told that the caller's own earlier annex of that name had ended,
            # which is history and touches nothing.
            assert not reply["ok"] or reply["result"] == {"AnnexID": name,
                                                          "already_ended": True}, reply
            assert self._held(region).get(name) == before

    @rule(uid=st.sampled_from(sorted(USERS)))
    def status(self, uid: int) -> None:
        TALLY["status"] += 1
        mine = {(row["region"], row["name"]) for row in self._live_rows()
                if row["owner"] == uid}
        reply = self._send(uid, {"command": "status", "credentials": USER_KEYS})
        assert reply["ok"], reply
        shown = reply["result"]["annexes"]
        assert all(annex["owner_uid"] == uid for annex in shown), shown
        assert {(annex["region"], annex["name"]) for annex in shown} == mine
        # root's -status hides no live annex.
        everyone = client.call(self.pool.socket_path, {"version": 1, "command": "status",
                                                       "credentials": USER_KEYS})
        assert {(annex["region"], annex["name"], annex["owner_uid"])
                for annex in everyone["result"]["annexes"]} == {
            (row["region"], row["name"], row["owner"]) for row in self._live_rows()}

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES), kind=st.sampled_from(sorted(CONFIGS)))
    def off_while_resuming(self, uid: int, region: str, name: str, kind: str) -> None:
        """-off and the owner's repeat of the create (resuming a parked one) at once."""
        TALLY["off_while_resuming"] += 1
        owner = self._owner(region, name)
        before = self._held(region).get(name)
        self._concurrently((uid, {"command": "off", "name": name, "region": region,
                                  "credentials": USER_KEYS}),
                           (uid, self._message(region, name, False, uid, kind)))
        if owner is not None and owner != uid:
            assert self._held(region).get(name) == before

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES))
    def off_while_extending(self, uid: int, region: str, name: str) -> None:
        """-off and a lease change of one annex at once: one claims it, the other is told."""
        TALLY["off_while_extending"] += 1
        owner = self._owner(region, name)
        before = self._held(region).get(name)
        replies = self._concurrently(
            (uid, {"command": "off", "name": name, "region": region, "credentials": USER_KEYS}),
            (uid, {"command": "extend", "name": name, "region": region,
                   "lease_duration": 7200, "credentials": USER_KEYS}))
        if owner is not None and owner != uid:
            assert self._held(region).get(name) == before
        elif owner == uid and replies[0]["ok"]:  # off won, or came second: the annex is gone
            assert not any(self._held(region).get(name, {}).get(kind) for kind in
                           ("fleets", "instances", "objects")), self._held(region).get(name)

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES))
    def off_while_the_backstop_ends_it(self, uid: int, region: str, name: str) -> None:
        """The lease runs out (the daemon's backstop, every 0.2 s, starts ending the annex)
        as its owner turns it off."""
        TALLY["off_while_the_backstop_ends_it"] += 1
        owner = self._owner(region, name)
        if owner == uid:
            self._set_lease_end(region, name, int(time.time()) - 1)
        self._send(uid, {"command": "off", "name": name, "region": region,
                         "credentials": USER_KEYS})
        if owner == uid:  # whichever claimed it finishes it: the name is free again
            wait_for(lambda: self._owner(region, name), f"{name} in {region} to end",
                     until=lambda held: held is None)

    @rule(uid=st.sampled_from(sorted(USERS)), region=st.sampled_from(REGIONS),
          name=st.sampled_from(NAMES))
    def extend_as_the_lease_expires(self, uid: int, region: str, name: str) -> None:
        """A lease change while the lease function's tick after expiry ends the annex."""
        TALLY["extend_as_the_lease_expires"] += 1
        with concurrent.futures.ThreadPoolExecutor(1) as ticking:
            tick = ticking.submit(self._expire, region, name)
            self._send(uid, {"command": "extend", "name": name, "region": region,
                             "lease_duration": 7200, "credentials": USER_KEYS})
            tick.result()

    @rule(identity=st.booleans(), hard=st.booleans())
    def restart(self, identity: bool, hard: bool) -> None:
        TALLY["restart"] += 1
        self._restart(identity, sig=signal.SIGKILL if hard else signal.SIGTERM)

    @rule(region=st.sampled_from(REGIONS), name=st.sampled_from(NAMES))
    def lease_expires_and_ticks(self, region: str, name: str) -> None:
        """Time passes the annex's lease end; EventBridge calls the lease function once."""
        TALLY["lease_expires_and_ticks"] += 1
        self._expire(region, name)

    def _expire(self, region: str, name: str) -> None:
        events = self.clients[region]["events"]
        try:
            targets = events.list_targets_by_rule(Rule=name)["Targets"]
        except events.exceptions.ResourceNotFoundException:
            return
        aws = self.clients[region]
        for target in targets:
            tick = json.loads(target["Input"])
            lease.handler(tick, None, now=lambda: tick["LeaseExpiration"] + 1,
                          clients=lease.Clients(aws["ec2"], aws["events"], aws["s3"]))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def the_promises_hold(self) -> None:
        """After every step: the journal's live annexes, then one reading of what AWS holds
        in each region (in that order: the backstop may end an annex in between, never
        start one), judged by both checks below."""
        rows = self._live_rows()
        held = {region: self._held(region) for region in REGIONS}
        self.nothing_escapes_its_lease(rows, held)
        self.status_agrees_with_aws_and_the_caps_hold(rows, held)

    def nothing_escapes_its_lease(self, rows: list[dict[str, Any]],
                                  held_by_region: dict[str, dict[str, Any]]) -> None:
        live = {(row["region"], row["name"]) for row in rows}
        for region in REGIONS:
            for name, held in held_by_region[region].items():
                if held["fleets"] or held["instances"] or held["objects"]:
                    assert held["rules"] == [name] and held["targets"] == [name], \
                        (region, name, held)
                    # ... and that lease is the one of the request that made them.
                    assert len(held["lease_tokens"]) == 1 and \
                        held["tokens"] <= held["lease_tokens"], (region, name, held)
                    assert (region, name) in live, (region, name, held, live)
                # One live fleet per launch: the create's, and each one the same name again
                # added (issue 25) under the same lease, with its own launch tag.
                launches = collections.Counter(held["launches"])
                assert max(launches.values(), default=0) <= 1, (region, name, held)

    def _leases(self, region: str) -> dict[str, int | None]:
        """Per rule name in ``region``: the LeaseExpiration its target holds (None: none)."""
        events, found = self.clients[region]["events"], {}
        for rule_found in events.list_rules()["Rules"]:
            name = rule_found["Name"]
            try:
                targets = events.list_targets_by_rule(Rule=name)["Targets"]
            except events.exceptions.ResourceNotFoundException:
                continue
            found[name] = json.loads(targets[0]["Input"])["LeaseExpiration"] if targets \
                else None
        return found

    def status_agrees_with_aws_and_the_caps_hold(
            self, rows: list[dict[str, Any]],
            held_by_region: dict[str, dict[str, Any]]) -> None:
        """Root's -status, on its first call, against AWS read just before and just after
        it (an annex the backstop changed in between is not compared); and the caps, on
        what AWS held (``held_by_region``) and whose annexes those were (``rows``).  The
        leases compared are those of annexes that run or wait to be resumed under them
        (SHOWN_AS_HELD); a parked rollback or teardown is removing its lease."""
        # Before: the leases of the reading just made (read again only after the call).
        before = {region: {name: held["lease_end"] for name, held in
                           held_by_region[region].items() if held["rules"]}
                  for region in REGIONS}
        reply = client.call(self.pool.socket_path, {"version": 1, "command": "status",
                                                    "credentials": USER_KEYS})
        after = {region: self._leases(region) for region in REGIONS}
        assert reply["ok"], reply
        costs: collections.Counter[int] = collections.Counter()
        for annex in reply["result"]["annexes"]:
            region, name = annex["region"], annex["name"]
            held = before[region].get(name)
            if annex["state"] in SHOWN_AS_HELD and annex["lease"] != "pending" and \
                    held == after[region].get(name):
                assert annex["lease"] in ("enforced", "expired", "missing"), annex
                assert (annex["lease"] == "missing") == (held is None), (annex, held)
                if held is not None:
                    assert annex["lease_end"] == held, (annex, held)
            assert annex["max_instances"] <= MAX_INSTANCES, annex
            if annex["worst_case_cost"] is not None:
                assert annex["worst_case_cost"] <= MAX_COST + 0.01, annex
                costs[annex["owner_uid"]] += annex["worst_case_cost"]
        assert all(total <= MAX_COST_PER_USER + 0.01 for total in costs.values()), costs
        owners = {(row["region"], row["name"]): row["owner"] for row in rows}
        running: collections.Counter[int | None] = collections.Counter()
        for region in REGIONS:
            for name, held in held_by_region[region].items():
                count = len(set(held["instances"]))
                assert count <= MAX_INSTANCES, (region, name, held)
                running[owners.get((region, name))] += count
        assert all(count <= MAX_INSTANCES for count in running.values()), running

    def teardown(self) -> None:
        print(f"creates so far: {dict(CREATED)}")  # with -s: which kinds ran, and how they ended
        try:
            if getattr(self, "daemon", None) is None:
                return
            # The daemon comes back with its identity: parked requests are driven to an end.
            self._restart(identity=True)
            self.daemon.stop()
            for region in REGIONS:
                for name in list(self._held(region)):
                    self._expire(region, name)
                left = {name: held for name, held in self._held(region).items()
                        if any(held.values())}
                assert left == {}, (region, left)
        finally:
            if getattr(self, "daemon", None) is not None and \
                    self.daemon.process.poll() is None:
                self.daemon.stop(signal.SIGKILL)
            shutil.rmtree(getattr(self, "root", "/nonexistent"), ignore_errors=True)


def test_the_daemon_keeps_its_promises_in_any_order(moto_server):
    WORLD.clear()
    WORLD["moto"] = moto_server
    TALLY.clear()
    explore = os.environ.get("ANNEX_MODEL_RANDOM") == "1"
    run_state_machine_as_test(AnnexModel, settings=settings(
        max_examples=int(os.environ.get("ANNEX_MODEL_EXAMPLES", "7")),
        stateful_step_count=int(os.environ.get("ANNEX_MODEL_STEPS", "15")),
        derandomize=not explore, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))
    print(f"model steps run: {dict(TALLY)}")
    assert set(TALLY) == {"create", "create_then_kill", "extend", "extend_then_kill", "off",
                          "status", "restart",
                          "lease_expires_and_ticks", "off_while_resuming",
                          "off_while_extending", "off_while_the_backstop_ends_it",
                          "extend_as_the_lease_expires"}, TALLY
