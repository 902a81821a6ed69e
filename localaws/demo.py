"""The whole life of a leased annex, on the embedded local AWS: ``python -m localaws.demo``.

Starts moto's server and a real ``condor_annexd``; runs the real ``condor_annex -setup``
(CloudFormation stacks: configuration bucket, the lease function from lambda/lease.py,
instance profile, security group; knobs written to the user config); creates two annexes with no ARN or key flags -- one from the classic console-style config
(LaunchSpecifications) and one from a config that launches from a launch template -- shows
them; lets their short leases expire while playing EventBridge; and shows that fleets,
instances, rules and config objects are all gone.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time

from annexd_lambda import lease

from . import fixtures
from .eventbridge import EventBridgePlayer, lambda_environment
from .moto_server import MotoServer
from .pool import REGION, AnnexDaemon, LocalPool, script

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")
#: annex name -> the example config it is made from
ANNEXES = {"demo": os.path.join(EXAMPLES, "spot-fleet.json"),
           "demo-lt": os.path.join(EXAMPLES, "spot-fleet-launch-template.json")}


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def fleet_instances(ec2, fleet_ids: list[str]) -> list[str]:
    """Instances launched by the fleets (from a launch template they carry no annex tag)."""
    return [i["InstanceId"] for fleet_id in fleet_ids for i in
            ec2.describe_spot_fleet_instances(SpotFleetRequestId=fleet_id)["ActiveInstances"]]


def live(ec2, instance_ids: list[str]) -> list[str]:
    if not instance_ids:
        return []
    reply = ec2.describe_instances(InstanceIds=instance_ids)
    return [i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] in lease.LIVE_INSTANCE_STATES]


def client_token_of(aws_url: str, annex_id: str) -> str | None:
    """The request's ClientToken, read from its lease target's Input while the lease holds."""
    events = fixtures.client("events", aws_url, REGION)
    try:
        targets = events.list_targets_by_rule(Rule=annex_id)["Targets"]
    except events.exceptions.ResourceNotFoundException:
        return None
    return next((json.loads(t["Input"]).get("ClientToken") for t in targets), None)


def show_annex(aws_url: str, annex_id: str, client_token: str, bucket: str,
               seen: set[str]) -> dict[str, int]:
    """Print what AWS holds of the annex's request; returns counts for the caller to check.

    It looks the way the lease function's teardown does (:func:`lease.teardown`): fleets and
    instances by the request's ClientToken tag, the rule whose description names the request,
    the object under the request's own key.  ``seen`` collects every instance shown, so that
    the check after the lease can ask about each of them by ID, whether or not it carried the
    annex tag.
    """
    ec2, events, s3 = (fixtures.client(name, aws_url, REGION) for name in ("ec2", "events", "s3"))
    fleets = lease.find_fleets(ec2, annex_id, client_token)
    seen.update(lease.find_instances(ec2, annex_id, client_token), fleet_instances(ec2, fleets))
    instances = live(ec2, sorted(seen))
    rules = [r["Name"] for r in events.list_rules(NamePrefix=annex_id)["Rules"]
             if r["Name"] == annex_id and
             r.get("Description") == lease.rule_description(annex_id, client_token)]
    key = lease.config_key(annex_id, REGION, client_token)
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
               if o["Key"] == key]
    print(f"   [{annex_id}] (request {client_token})")
    print(f"   spot fleet requests : {fleets or 'none'}")
    print(f"   running instances   : {instances or 'none'}")
    print(f"   lease rule          : {rules or 'none'}"
          + (f" ({events.describe_rule(Name=annex_id)['ScheduleExpression']})" if rules else ""))
    print(f"   config object       : {[f's3://{bucket}/{k}' for k in objects] or 'none'}")
    return {"fleets": len(fleets), "instances": len(instances), "rules": len(rules),
            "objects": len(objects)}


def condor_annex(pool: LocalPool, *args: str) -> subprocess.CompletedProcess:
    """Run the real condor_annex, echoing the command line and its output."""
    shown = [os.path.relpath(a, os.getcwd()) if a.startswith(os.sep) and not
             a.startswith(pool.root) else os.path.basename(a) if a.startswith(pool.root) else a
             for a in args]
    say("$ condor_annex " + " ".join(shown))
    result = subprocess.run([script("condor_annex"), *args], env=pool.env(), text=True,
                            capture_output=True)
    for line in (result.stdout + result.stderr).splitlines():
        print(f"   {line}")
    if result.returncode:
        print(f"   (exit status {result.returncode})")
    return result


def report_tick(rule: str, result: object) -> None:
    """Say what the lease function did on one EventBridge tick."""
    if isinstance(result, Exception):
        print(f"   lease function for {rule} failed: {result}", flush=True)
    elif isinstance(result, dict) and result.get("expired"):
        print(f"   lease function for {rule}: lease EXPIRED; cancelled "
              f"{result['cancelled_fleets']}, terminated "
              f"{len(result['terminated_instances'])} more instance(s), removed target and "
              f"rule, deleted config: {result['deleted_config']}", flush=True)
    elif isinstance(result, dict) and result.get("refused"):
        print(f"   lease function for {rule}: ended nothing: {result['refused']}", flush=True)
    else:
        print(f"   lease function for {rule}: lease still held", flush=True)


def run(lease_seconds: int, tick_seconds: float) -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    root = tempfile.mkdtemp(prefix="annex-demo-")
    say("Starting the local AWS emulator (moto server on 127.0.0.1)")
    with MotoServer(log_path=os.path.join(root, "moto.log")) as aws:
        print(f"   {aws.url}")
        pool = LocalPool(root).write(aws.url, secret="demo-secret-key-never-printed",
                                     bucket=None)
        say(f"Starting condor_annexd (CONDOR_CONFIG={pool.config_file})")
        with AnnexDaemon(pool):
            print(f"   listening on {pool.socket_path}")
            setup = condor_annex(pool, "-setup", pool.access_key_file, pool.secret_key_file)
            if setup.returncode:
                return setup.returncode
            made = {name: fixtures.client("cloudformation", aws.url, REGION).describe_stacks(
                StackName=f"HTCondorAnnex-{name}")["Stacks"][0]["Outputs"][0]["OutputValue"]
                for name in ("ConfigurationBucket", "InstanceProfile", "SecurityGroup")}
            bucket = made["ConfigurationBucket"]
            say("The site's launch template (an image with HTCondor and condor_annex_ec2, "
                "-setup's instance profile and security group)")
            print("   " + fixtures.create_worker_template(
                fixtures.client("ec2", aws.url, REGION), made["InstanceProfile"],
                made["SecurityGroup"]) + f" ({fixtures.WORKER_TEMPLATE})")
            for name, example in ANNEXES.items():
                created = condor_annex(pool, "-annex-name", name, "-lease-duration",
                                       str(lease_seconds), "-count", "3", example)
                if created.returncode:
                    return created.returncode
                # What AWS does and the emulator does not: tag every fleet instance with its
                # fleet's ID (how -status and the instances find a launch template's).
                fixtures.tag_fleet_instances_as_aws_does(
                    fixtures.client("ec2", aws.url, REGION), created.stdout.strip())
            condor_annex(pool, "-status")
            seen: dict[str, set[str]] = {name: set() for name in ANNEXES}
            tokens = {name: client_token_of(aws.url, name) for name in ANNEXES}
            if not all(tokens.values()):
                say(f"An annex has no lease in force: {tokens}")
                return 1
            say("What AWS holds for the annexes")
            for name in ANNEXES:
                show_annex(aws.url, name, tokens[name], bucket, seen[name])
            say(f"Playing EventBridge every {tick_seconds:g} s until the {lease_seconds} s "
                "leases expire")
            stop = threading.Event()
            player = EventBridgePlayer(fixtures.client("events", aws.url, REGION),
                                       fixtures.client("lambda", aws.url, REGION),
                                       lease.handler)
            with lambda_environment(aws.url, REGION):
                ticker = threading.Thread(target=player.run,
                                          args=(tick_seconds, stop, report_tick))
                ticker.start()
                deadline = time.monotonic() + lease_seconds + 30
                events = fixtures.client("events", aws.url, REGION)
                while time.monotonic() < deadline:
                    if not any(r["Name"] in ANNEXES for r in events.list_rules()["Rules"]):
                        break
                    time.sleep(0.5)
                stop.set()
                ticker.join()
            say("After the leases expired")
            left = {name: show_annex(aws.url, name, tokens[name], bucket, seen[name])
                    for name in ANNEXES}
            condor_annex(pool, "-status")
    gone = not any(count for counts in left.values() for count in counts.values())
    say("Lifecycle complete: nothing of either annex is left." if gone
        else "Something was left behind!")
    return 0 if gone else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lease-seconds", type=int, default=15)
    parser.add_argument("--tick-seconds", type=float, default=3.0)
    args = parser.parse_args()
    return run(args.lease_seconds, args.tick_seconds)


if __name__ == "__main__":
    sys.exit(main())
