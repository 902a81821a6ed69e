"""The calls of operating live annexes: status, lease changes, ending them now."""
from __future__ import annotations

import json
from typing import Any

from annexd_lambda import lease
from annexd_lambda.lease import ANNEX_TAG

from .create import LEASE_METADATA
from .errors import NotFound
from .session import AwsSession


class OperateCalls(AwsSession):
    """What -status, -lease-duration, -off and the backstop ask of AWS."""

    def set_config_lease_end(self, bucket: str, key: str, lease_end: int) -> None:
        """Replace the config object's lease-end metadata in place (body and tags kept)."""
        with self._call("S3 CopyObject"):
            self.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                                MetadataDirective="REPLACE", TaggingDirective="COPY",
                                Metadata={LEASE_METADATA: str(lease_end)},
                                ContentType="application/gzip", ServerSideEncryption="AES256")

    def instance_states(self, annex_id: str) -> dict[str, int]:
        """How many of the annex's instances are in each state (terminated ones not counted).

        One paginated, tag-filtered DescribeInstances: cost grows with the annex's instances,
        never with the account's.
        """
        return self._states(
            Filters=[{"Name": f"tag:{ANNEX_TAG}", "Values": [annex_id]},
                     {"Name": "instance-state-name", "Values": lease.LIVE_INSTANCE_STATES}],
            annex_id=annex_id)

    def _states(self, annex_id: str | None = None, **query: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        if "InstanceIds" not in query:
            query["PaginationConfig"] = {"PageSize": 1000}
        with self._call("EC2 DescribeInstances"):
            for page in self.ec2.get_paginator("describe_instances").paginate(**query):
                for reservation in page.get("Reservations", []):
                    for instance in reservation.get("Instances", []):
                        if annex_id is None or lease.has_annex_tag(instance.get("Tags"),
                                                                   annex_id):
                            state = instance["State"]["Name"]
                            counts[state] = counts.get(state, 0) + 1
        return counts

    def lease_target(self, annex_id: str) -> dict[str, Any] | None:
        """The annex's lease target (Arn and parsed Input), or None if its rule is gone."""
        try:
            with self._call("EventBridge ListTargetsByRule"):
                targets = self.events.list_targets_by_rule(Rule=annex_id)["Targets"]
        except NotFound:
            return None
        for target in targets:
            if target.get("Id") == annex_id:
                return {"Arn": target["Arn"], "Input": json.loads(target.get("Input", "{}"))}
        return None

    def teardown(self, annex_id: str, bucket: str | None,
                 annex_type: str | None = None) -> dict[str, Any]:
        """Everything the lease function does at expiry, now."""
        with self._call("annex teardown"):
            return lease.teardown(annex_id, bucket, self.lease_clients, annex_type)

    def fleet_instance_states(self, kind: str, fleet_id: str) -> dict[str, int]:
        """States of a fleet's instances, for fleets whose instances carry no annex tag
        (launched from a launch template): the fleet's instance list, then their states."""
        operation, paginate = {
            "spot-fleet": ("EC2 DescribeSpotFleetInstances", lambda: self.ec2.get_paginator(
                "describe_spot_fleet_instances").paginate(SpotFleetRequestId=fleet_id)),
            "ec2-fleet": ("EC2 DescribeFleetInstances", lambda: [
                self.ec2.describe_fleet_instances(FleetId=fleet_id)]),
        }[kind]
        try:
            with self._call(operation):
                ids = [i["InstanceId"] for page in paginate()
                       for i in page.get("ActiveInstances", [])]
        except NotFound:
            return {}
        return self._states(Filters=[{"Name": "instance-state-name",
                                      "Values": lease.LIVE_INSTANCE_STATES}],
                            InstanceIds=ids) if ids else {}

    # -- one-time setup (CloudFormation) -----------------------------------------------------
