"""``condor_annex_ec2``: at boot, before HTCondor starts, install this annex instance's config.

1. lock the instance metadata service to root (iptables), when we can, and say so either way;
2. read the instance ID, region and instance profile from the metadata service (IMDSv2);
3. find the annex from the instance's ``htcondor:AnnexName`` tag, and its config object from
   what the instance's own role may read;
4. download it and install it into the config directory (a tarball is extracted safely);
5. record the instance ID for the startd's ad, and the lease end the object's metadata
   carries (see :mod:`annex_ec2.lease`).

``condor_annex_ec2 -refresh-lease`` (every minute, from a systemd timer) re-reads that lease
end and, when the lease was changed, rewrites the lease file and runs ``condor_reconfig``.

Every step is retried with exponential backoff and full jitter, within one overall budget
(``-max-wait``, default 3000 s: most of an hour, as AWS bills by the second but a broken
instance should not idle forever).  When the budget is spent, or something fails that
waiting cannot fix (the config object is gone: the lease has ended), the reason is logged
and, unless ``-no-shutdown``, the instance powers itself off.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from annexd.backoff import Backoff, Deadline

from . import discover, extract, imds, lease

T = TypeVar("T")
log = logging.getLogger("condor_annex_ec2")

PERMANENT_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchEntity"})
METADATA_ADDRESS = "169.254.169.254"
INSTANCE_FILE = "49annex-instance.config"


class GaveUp(Exception):
    """The overall time budget ran out."""


class Retrier:
    """Backoff with full jitter, 2 s doubling to 60 s, inside one deadline for the whole boot."""

    def __init__(self, budget_seconds: float, base: float = 2.0, cap: float = 60.0):
        self.deadline = Deadline(budget_seconds)
        self.backoff = Backoff(base, cap)

    def __call__(self, what: str, attempt: Callable[[], T]) -> T:
        tries = 0
        while True:
            try:
                return attempt()
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code in PERMANENT_CODES:
                    raise discover.Permanent(f"{what}: {code}: "
                                             f"{error.response['Error'].get('Message')}") from None
                problem: Exception = error
            except (discover.NotYet, imds.MetadataError, BotoCoreError) as error:
                problem = error
            tries += 1
            delay = self.backoff.delay(tries)
            if not self.deadline.allows(delay):
                raise GaveUp(f"{what}: still failing after {tries} tries: {problem}")
            log.warning("%s failed (%s); retrying in %.1f s", what, problem, delay)
            time.sleep(delay)


def restrict_metadata_service() -> str:
    """Let only root reach the metadata service (and so the role's credentials)."""
    endpoint = imds.endpoint()
    if METADATA_ADDRESS not in endpoint:
        return f"not restricting the metadata service: it is {endpoint}, not this instance's"
    if os.geteuid() != 0:
        return "not restricting the metadata service: not running as root"
    iptables = shutil.which("iptables")
    if iptables is None:
        return "not restricting the metadata service: iptables is not installed"
    rule = ["OUTPUT", "-m", "owner", "--destination", METADATA_ADDRESS, "!", "--uid-owner",
            "0", "-j", "REJECT"]
    if subprocess.run([iptables, "-C", *rule], capture_output=True).returncode == 0:
        return "the metadata service was already restricted to root"
    result = subprocess.run([iptables, "-A", *rule], capture_output=True, text=True)
    if result.returncode != 0:
        return f"not restricting the metadata service: iptables said {result.stderr.strip()}"
    return "restricted the metadata service to root"


def _write_instance_facts(target: str, instance_id: str) -> None:
    text = (f'EC2InstanceID = "{instance_id}"\n'
            "STARTD_ATTRS = $(STARTD_ATTRS) EC2InstanceID\n")
    staging = os.path.join(target, f".{INSTANCE_FILE}.new")
    with open(staging, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(staging, 0o644)
    os.replace(staging, os.path.join(target, INSTANCE_FILE))


def bootstrap(config_dir: str, retry: Retrier) -> str:
    """Install the configuration; returns the annex ID."""
    metadata = imds.Imds()
    instance_id = retry("reading the instance ID", metadata.instance_id)
    region = retry("reading the region", metadata.region)
    session = boto3.session.Session(region_name=region)
    config = Config(retries={"mode": "standard", "total_max_attempts": 3})
    ec2, iam, s3 = (session.client(name, config=config) for name in ("ec2", "iam", "s3"))
    annex = retry("finding this instance's annex",
                  lambda: discover.annex_id(ec2, instance_id))
    profile = retry("reading the instance profile", metadata.instance_profile_arn)
    bucket, key = retry("finding the annex's config object",
                        lambda: discover.config_object(iam, profile, annex))
    def download() -> tuple[bytes, dict[str, str]]:
        reply = s3.get_object(Bucket=bucket, Key=key)
        return reply["Body"].read(), reply.get("Metadata") or {}

    payload, metadata = retry(f"downloading s3://{bucket}/{key}", download)
    installed = extract.install(payload, config_dir, f"50annex-{annex}.config")
    _write_instance_facts(config_dir, instance_id)
    lease.record_object(config_dir, bucket, key, annex)
    lease_end = lease.from_metadata(metadata)
    if lease_end is None:
        log.warning("s3://%s/%s carries no lease end; the lease function alone ends this "
                    "instance", bucket, key)
    else:
        lease.write(config_dir, lease_end)
    log.info("annex %s: installed %s from s3://%s/%s into %s (lease ends %s)", annex,
             ", ".join(installed), bucket, key, config_dir, lease_end)
    return annex


def refresh_lease(config_dir: str, reconfig_command: str) -> bool:
    """Bring the lease file in step with the config object; True if it changed.

    A config object that is gone means the lease has ended: the startd is told to leave.
    """
    recorded = lease.recorded_object(config_dir)
    region = imds.Imds().region()
    s3 = boto3.session.Session(region_name=region).client(
        "s3", config=Config(retries={"mode": "standard", "total_max_attempts": 3}))
    try:
        metadata = s3.head_object(Bucket=recorded["bucket"], Key=recorded["key"])["Metadata"]
        lease_end = lease.from_metadata(metadata)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        log.warning("annex %s: its config object is gone: the lease has ended",
                    recorded["annex"])
        lease_end = lease.ended_now()
    if lease_end is None or not lease.write(config_dir, lease_end):
        return False
    log.info("annex %s: the lease now ends at %d; reconfiguring HTCondor", recorded["annex"],
             lease_end)
    subprocess.run(shlex.split(reconfig_command), check=False)
    return True


def power_off(command: str) -> None:
    log.error("powering off so that a broken instance does not bill forever: %s", command)
    subprocess.run(shlex.split(command), check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="condor_annex_ec2",
        description="Install this annex instance's HTCondor configuration (run at boot).")
    parser.add_argument("-config-dir", default="/etc/condor/config.d",
                        help="where HTCondor reads its configuration (LOCAL_CONFIG_DIR)")
    parser.add_argument("-no-shutdown", action="store_true",
                        help="on failure, log and exit non-zero, but do not power off")
    parser.add_argument("-max-wait", type=float, default=3000.0, metavar="SECONDS",
                        help="give up after this long (default 3000)")
    parser.add_argument("-poweroff-command", default="/sbin/shutdown -h now",
                        help="how to power off on failure")
    parser.add_argument("-refresh-lease", action="store_true",
                        help="only re-read the lease end (run every minute by a timer)")
    parser.add_argument("-reconfig-command", default="condor_reconfig",
                        help="with -refresh-lease: how to make HTCondor re-read its config")
    parser.add_argument("-retry-base", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="condor_annex_ec2: %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    if args.refresh_lease:
        try:
            refresh_lease(args.config_dir, args.reconfig_command)
        except Exception as error:  # the next run of the timer tries again
            log.error("cannot refresh the lease end: %s", error)
            return 1
        return 0
    log.info("%s", restrict_metadata_service())
    try:
        bootstrap(args.config_dir, Retrier(args.max_wait, base=args.retry_base))
    except (discover.Permanent, GaveUp, extract.UnsafeArchive) as error:
        log.error("cannot install this annex's configuration: %s", error)
    except Exception:  # a bug must not leave a broken instance billing either
        log.exception("cannot install this annex's configuration: unexpected error")
    else:
        return 0
    if not args.no_shutdown:
        power_off(args.poweroff_command)
    return 1


if __name__ == "__main__":
    sys.exit(main())
