"""The calls of the create sequence (and its rollback): lease, config object, launch."""
from __future__ import annotations

import threading
import time
from typing import Any

from annexd_lambda import lease
from annexd_lambda.lease import ANNEX_TAG

from annexd.aws.errors import InvalidInput, NotFound
from annexd.aws.session import AwsSession

#: S3 object metadata (x-amz-meta-...) of the config object: the lease end in force.
LEASE_METADATA = "annex-lease-expiration"
#: ... and when the token in it was minted, if it was renewed (annexd.commands.renew).
TOKEN_METADATA = "annex-token-minted"


rule_description = lease.rule_description


class RecentlySeen:
    """When each key was last seen (monotonic clock); old entries are dropped as it grows."""

    def __init__(self, keep_seconds: float = 3600.0):
        self._seen: dict[Any, float] = {}
        self._lock = threading.Lock()
        self._keep = keep_seconds

    def recent(self, key: Any, within: float) -> bool:
        with self._lock:
            seen = self._seen.get(key)
        return seen is not None and time.monotonic() - seen < within

    def saw(self, key: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._seen[key] = now
            if len(self._seen) > 1024:
                self._seen = {k: t for k, t in self._seen.items() if now - t < self._keep}


FUNCTIONS_SEEN = RecentlySeen()


class CreateCalls(AwsSession):
    """What creating an annex, and undoing a failed create, asks of AWS."""

    def check_function(self, arn: str) -> None:
        """Refuse a lease function that does not exist (or these credentials cannot see).

        Once seen, the same credentials do not ask again for ``function_check_seconds``: in
        steady state a create is then five calls.  A function deleted meanwhile is what the
        daemon's lease backstop is for.
        """
        key = (self._identity, self._region, arn)
        if FUNCTIONS_SEEN.recent(key, self._function_check_seconds):
            return
        with self._call("Lambda GetFunction"):
            self.lambda_.get_function(FunctionName=arn)
        FUNCTIONS_SEEN.saw(key)

    def launch_template_data(self, spec: dict[str, Any]) -> dict[str, Any]:
        """What the launch template version ``spec`` (a LaunchTemplateSpecification) says
        its instances get (DescribeLaunchTemplateVersions)."""
        which = {key: spec[key] for key in ("LaunchTemplateId", "LaunchTemplateName")
                 if spec.get(key)}
        with self._call("EC2 DescribeLaunchTemplateVersions"):
            versions = self.ec2.describe_launch_template_versions(
                **which, Versions=[str(spec.get("Version") or "$Default")])
        found = versions.get("LaunchTemplateVersions") or [{}]
        return found[0].get("LaunchTemplateData", {})

    def rule_description(self, name: str) -> str | None:
        """The rule's description; None if there is no such rule."""
        try:
            with self._call("EventBridge DescribeRule"):
                return self.events.describe_rule(Name=name).get("Description", "")
        except NotFound:
            return None

    def put_config(self, bucket: str, key: str, body: bytes, annex_id: str,
                   lease_end: int, token_minted: float | None = None) -> None:
        """Upload the annex's config; its lease end travels as object metadata, which the
        instances re-read (so a lease change reaches them without rewriting the secrets).
        ``token_minted``: a renewed token's minting time, also in the metadata, by which the
        instances see that the object changed though the lease end did not."""
        metadata = {LEASE_METADATA: str(lease_end)}
        if token_minted is not None:
            metadata[TOKEN_METADATA] = str(int(token_minted))
        with self._call("S3 PutObject"):
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256",
                               ContentType="application/gzip", Tagging=f"{ANNEX_TAG}={annex_id}",
                               Metadata=metadata)

    def delete_config(self, bucket: str, key: str) -> None:
        with self._call("S3 DeleteObject"):
            lease.delete_config(self.s3, bucket, key)

    def put_rule(self, name: str, schedule: str, annex_id: str, client_token: str,
                 owner_tags: dict[str, str] | None = None) -> str:
        """The lease rule; its description names the create request (its ClientToken), so
        that a resumed create knows the rule for its own."""
        with self._call("EventBridge PutRule"):
            reply = self.events.put_rule(
                Name=name, ScheduleExpression=schedule, State="ENABLED",
                Description=rule_description(annex_id, client_token),
                Tags=[{"Key": k, "Value": v}
                      for k, v in {ANNEX_TAG: annex_id, **(owner_tags or {})}.items()])
        return reply["RuleArn"]

    def delete_rule(self, name: str) -> None:
        with self._call("EventBridge DeleteRule"):
            lease.delete_rule(self.events, name)

    def put_target(self, rule: str, target_id: str, arn: str, input_json: str) -> None:
        with self._call("EventBridge PutTargets"):
            reply = self.events.put_targets(
                Rule=rule, Targets=[{"Id": target_id, "Arn": arn, "Input": input_json}])
        if reply.get("FailedEntryCount"):
            entry = reply["FailedEntries"][0]
            raise InvalidInput("EventBridge PutTargets", entry.get("ErrorCode", "Failed"),
                               entry.get("ErrorMessage", "target not added"))

    def remove_target(self, rule: str, target_id: str) -> None:
        with self._call("EventBridge RemoveTargets"):
            lease.remove_target(self.events, rule, target_id)

    def request_spot_fleet(self, config: dict[str, Any]) -> str:
        with self._call("EC2 RequestSpotFleet"):
            reply = self._fleet_ec2.request_spot_fleet(SpotFleetRequestConfig=config)
        return reply["SpotFleetRequestId"]

    def run_instances(self, params: dict[str, Any]) -> list[str]:
        """Start on-demand instances (no blind retry, as for RequestSpotFleet)."""
        with self._call("EC2 RunInstances"):
            reply = self._fleet_ec2.run_instances(**params)
        return [instance["InstanceId"] for instance in reply.get("Instances", [])]

    def find_instances(self, annex_id: str, client_token: str) -> list[str]:
        """Live instances of one create request (annex tag and ClientToken tag)."""
        with self._call("EC2 DescribeInstances"):
            return lease.find_instances(self.ec2, annex_id, client_token)

    def terminate_instances(self, instance_ids: list[str]) -> None:
        with self._call("EC2 TerminateInstances"):
            lease.terminate_instances(self.ec2, instance_ids)

    def find_fleets(self, annex_id: str, client_token: str | None = None) -> list[str]:
        with self._call("EC2 DescribeSpotFleetRequests"):
            return lease.find_fleets(self.ec2, annex_id, client_token)

    def tagged_fleets(self, annex_id: str, tags: dict[str, str],
                      client_token: str | None = None) -> list[str]:
        """The Spot Fleet requests of the annex carrying every tag of ``tags`` (or, as AWS
        reports it, ``client_token``), in any state: one auto order's fleet, by its order
        tag, whether or not it still runs anything."""
        found = []
        with self._call("EC2 DescribeSpotFleetRequests"):
            for page in self.ec2.get_paginator("describe_spot_fleet_requests").paginate():
                for fleet in page.get("SpotFleetRequestConfigs", []):
                    have = {t.get("Key"): t.get("Value") for t in fleet.get("Tags") or ()}
                    token = fleet.get("SpotFleetRequestConfig", {}).get("ClientToken")
                    if have.get(lease.ANNEX_TAG) == annex_id and (
                            all(have.get(k) == v for k, v in tags.items()) or
                            (client_token is not None and token == client_token)):
                        found.append(fleet["SpotFleetRequestId"])
        return found

    def cancel_fleets(self, fleet_ids: list[str]) -> None:
        with self._call("EC2 CancelSpotFleetRequests"):
            lease.cancel_fleets(self.ec2, fleet_ids)

    # -- operating annexes -------------------------------------------------------------------

    def create_fleet(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateFleet (no blind retry, as for RequestSpotFleet): the whole reply, since an
        instant fleet's instances and launch errors come back in it."""
        with self._call("EC2 CreateFleet"):
            return self._fleet_ec2.create_fleet(**params)

    def find_ec2_fleets(self, annex_id: str, client_token: str | None = None) -> list[str]:
        with self._call("EC2 DescribeFleets"):
            return lease.find_ec2_fleets(self.ec2, annex_id, client_token)

    def delete_ec2_fleets(self, fleet_ids: list[str]) -> None:
        with self._call("EC2 DeleteFleets"):
            lease.delete_ec2_fleets(self.ec2, fleet_ids)

    def tagged_ec2_fleets(self, annex_id: str, tags: dict[str, str]) -> list[str]:
        """The EC2 Fleets of the annex carrying every tag of ``tags``, in any state: one
        launch added to the annex, by its launch tag (:meth:`tagged_fleets` for Spot Fleet;
        CreateFleet's own ClientToken is not reported everywhere -- moto -- so the tag
        decides)."""
        found = []
        with self._call("EC2 DescribeFleets"):
            for page in self.ec2.get_paginator("describe_fleets").paginate():
                for fleet in page.get("Fleets", []):
                    have = {t.get("Key"): t.get("Value") for t in fleet.get("Tags") or ()}
                    if have.get(ANNEX_TAG) == annex_id and \
                            all(have.get(key) == value for key, value in tags.items()):
                        found.append(fleet["FleetId"])
        return found
