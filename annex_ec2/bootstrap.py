"""``condor_annex_ec2``: at boot, before HTCondor starts, install this annex instance's config.

1. lock the instance metadata service to root (iptables), when we can, and say so either way;
2. read the instance ID, region and instance profile from the metadata service (IMDSv2);
3. find the annex from the instance's ``htcondor:AnnexName`` tag (or its fleet's, see
   :mod:`annex_ec2.discover`), and its config object from what the instance's own role may
   read: with the setup's role, this instance's own copy of it, named after its
   ``aws:userid`` (STS GetCallerIdentity);
4. download it and install it into the config directory (a tarball is extracted safely).
   A copy that is not there yet is waited for (condor_annexd writes it once it sees the
   instance, within a pass of its token renewal, ``ANNEXD_LEASE_CHECK_INTERVAL`` at most):
   at boot a missing copy cannot tell "not yet" from "the lease has ended", and an instance
   whose lease has ended is terminated by the lease function meanwhile;
5. record the instance ID and whether it is a Spot instance (``CloudInterruptible``) for the
   startd's ad, and the lease end the object's metadata carries (see :mod:`annex_ec2.lease`).

``condor_annex_ec2 -refresh-lease`` (every minute, from a systemd timer) re-reads that lease
end and, when the lease was changed, rewrites the lease file and runs ``condor_reconfig``.

Every step is retried with exponential backoff and full jitter, within one overall budget
(``-max-wait``, default 3000 s: most of an hour, as AWS bills by the second but a broken
instance should not idle forever).  When the budget is spent, or something fails that
waiting cannot fix (the config object is gone: the lease has ended), the reason is logged
and, unless ``-no-shutdown``, the instance powers itself off.

This module needs boto3; the command line (:mod:`annex_ec2.command`) imports it only for the
modes that talk to AWS.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from typing import Any, Callable, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import condor, discover, extract, gone, imds, interruption, lease
from .backoff import Backoff, Deadline

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


def instance_facts(instance_id: str, interruptible: bool) -> str:
    """The config file that puts what the instance knows of itself into the startd's ad."""
    return (f'EC2InstanceID = "{instance_id}"\n'
            f"CloudInterruptible = {interruptible}\n"
            "STARTD_ATTRS = $(STARTD_ATTRS) EC2InstanceID CloudInterruptible\n")


def bootstrap(config_dir: str, retry: Retrier) -> str:
    """Install the configuration; returns the annex ID."""
    metadata = imds.Imds()
    instance_id = retry("reading the instance ID", metadata.instance_id)
    interruptible = retry("reading the instance life cycle",
                          lambda: interruption.interruptible(metadata))
    region = retry("reading the region", metadata.region)
    session = boto3.session.Session(region_name=region)
    config = Config(retries={"mode": "standard", "total_max_attempts": 3})
    ec2, iam, s3, sts = (session.client(name, config=config)
                         for name in ("ec2", "iam", "s3", "sts"))
    annex, token, owner = retry("finding this instance's annex",
                         lambda: discover.annex_identity(ec2, instance_id))
    profile = retry("reading the instance profile", metadata.instance_profile_arn)
    bucket, key, copy = retry("finding the annex's config object",
                              lambda: discover.config_object(
                                  iam, profile, annex, region, token, owner,
                                  lambda: sts.get_caller_identity()["UserId"]))

    def download() -> tuple[bytes, dict[str, str]]:
        try:
            reply = gone.read(s3, bucket, key, lambda: s3.get_object(Bucket=bucket, Key=key))
        except gone.Gone as missing:
            if copy:  # condor_annexd writes it once it sees this instance: wait
                raise discover.NotYet(f"{missing} (yet): condor_annexd has not copied the "
                                      "annex's configuration for this instance") from None
            # waiting cannot bring it back: the lease has ended
            raise discover.Permanent(f"{missing}: the annex's lease has ended") from None
        return reply["Body"].read(), reply.get("Metadata") or {}

    payload, metadata = retry(f"downloading s3://{bucket}/{key}", download)
    installed = extract.install(payload, config_dir, f"50annex-{annex}.config")
    condor.write(config_dir, INSTANCE_FILE, instance_facts(instance_id, interruptible))
    lease.record_object(config_dir, bucket, key, annex, lease.token_stamp(metadata))
    lease_end = lease.from_metadata(metadata)
    if lease_end is None:
        log.warning("s3://%s/%s carries no lease end; the lease function alone ends this "
                    "instance", bucket, key)
    else:
        lease.write(config_dir, lease_end)
    log.info("annex %s: installed %s from s3://%s/%s into %s (lease ends %s)", annex,
             ", ".join(installed), bucket, key, config_dir, lease_end)
    return annex


def renew_token(s3: Any, recorded: dict[str, str], config_dir: str,
                lease_end: int | None, stamp: str = "") -> bool:
    """Install the config object again when it holds a newer token: the lease end moved (a
    lease change renews the token in the same write), or the daemon renewed the token
    (``stamp``, the object's token metadata, differs from the one installed).  True if it
    was installed again."""
    moved = lease_end is not None and lease.current(config_dir) != lease_end
    if not moved and stamp == recorded.get("token", ""):
        return False
    payload = s3.get_object(Bucket=recorded["bucket"], Key=recorded["key"])["Body"].read()
    extract.install(payload, config_dir, f"50annex-{recorded['annex']}.config")
    lease.record_object(config_dir, recorded["bucket"], recorded["key"], recorded["annex"],
                        stamp)
    return True


def refresh_lease(config_dir: str, reconfig_command: str) -> bool:
    """Bring the lease file and the token in step with the config object; True if either
    changed.

    A config object that is gone means the lease has ended: the startd is told to leave.
    A denial is not "gone" (see :mod:`annex_ec2.gone`): it is raised, and the next run of the
    timer tries again.
    """
    recorded = lease.recorded_object(config_dir)
    region = imds.Imds().region()
    s3 = boto3.session.Session(region_name=region).client(
        "s3", config=Config(retries={"mode": "standard", "total_max_attempts": 3}))
    bucket, key = recorded["bucket"], recorded["key"]
    renewed = False
    try:
        metadata = gone.read(s3, bucket, key,
                             lambda: s3.head_object(Bucket=bucket, Key=key))["Metadata"]
        lease_end = lease.from_metadata(metadata)
        renewed = renew_token(s3, recorded, config_dir, lease_end, lease.token_stamp(metadata))
    except gone.Gone:
        log.warning("annex %s: its config object is gone: the lease has ended",
                    recorded["annex"])
        lease_end = lease.ended_now()
    moved = lease_end is not None and lease.write(config_dir, lease_end)
    if not (moved or renewed):
        return False
    if moved:
        log.info("annex %s: the lease now ends at %d; reconfiguring HTCondor",
                 recorded["annex"], lease_end)
    else:
        log.info("annex %s: installed its renewed token; reconfiguring HTCondor",
                 recorded["annex"])
    condor.run(reconfig_command, "make HTCondor read the new lease end and token")
    return True


def boot(config_dir: str, max_wait: float, retry_base: float) -> bool:
    """Everything ``condor_annex_ec2`` does at boot; False (with the reason logged) when the
    configuration could not be installed."""
    log.info("%s", restrict_metadata_service())
    try:
        bootstrap(config_dir, Retrier(max_wait, base=retry_base))
    except (discover.Permanent, GaveUp, extract.UnsafeArchive) as error:
        log.error("cannot install this annex's configuration: %s", error)
    except Exception:  # a bug must not leave a broken instance billing either
        log.exception("cannot install this annex's configuration: unexpected error")
    else:
        return True
    return False


# pyproject.toml's console script is annex_ec2.bootstrap:main.  The command line itself lives in
# annex_ec2.command, which imports this module (and so boto3) only for the modes that need it.
from .command import main  # noqa: E402  (after everything command may import from here)
