"""The calls of operating live annexes: status, lease changes, ending them now."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from annexd_lambda import lease
from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG

from annexd.aws.create import LEASE_METADATA
from annexd.aws.errors import NotFound
from annexd.aws.session import AwsSession

#: The most values one DescribeInstances filter takes.
FILTER_VALUES = 200
#: The most rule names one ListRuleNamesByTarget page holds.
RULE_NAMES_PAGE = 100


class OperateCalls(AwsSession):
    """What -status, -lease-duration, -off and the backstop ask of AWS."""

    def set_config_lease_end(self, bucket: str, key: str, lease_end: int) -> None:
        """Replace the config object's lease-end metadata in place (body and tags kept)."""
        with self._call("S3 CopyObject"):
            self.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                                MetadataDirective="REPLACE", TaggingDirective="COPY",
                                Metadata={LEASE_METADATA: str(lease_end)},
                                ContentType="application/gzip", ServerSideEncryption="AES256")

    def get_config(self, bucket: str, key: str) -> bytes:
        """The config object's body (a lease change rewrites the token in it)."""
        with self._call("S3 GetObject"):
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def instance_states(self, annex_id: str) -> dict[str, int]:
        """How many of one annex's tagged instances are in each state."""
        return self.count_instances({ANNEX_TAG: {annex_id: annex_id}}).get(annex_id, {})

    def count_instances(self, wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, int]]:
        """Live instances per annex and state, for many annexes at once.

        ``wanted`` maps a tag key to {tag value: annex ID}.  One paginated DescribeInstances
        per tag key (and per 200 values, AWS's limit for one filter): the calls grow with the
        instances (a page holds 1,000), never with the number of annexes.
        """
        return {annex: {state: len(ids) for state, ids in states.items()}
                for annex, states in self.list_instances(wanted).items()}

    def list_instances(self, wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, list[str]]]:
        """Live instance IDs per annex and state, with the calls of count_instances."""
        found: dict[str, dict[str, list[str]]] = {}
        for key, annexes in wanted.items():
            values = sorted(annexes)
            for start in range(0, len(values), FILTER_VALUES):
                filters = [{"Name": f"tag:{key}", "Values": values[start:start + FILTER_VALUES]},
                           {"Name": "instance-state-name", "Values": lease.LIVE_INSTANCE_STATES}]
                for instance in self._instances(filters):
                    tags = {t.get("Key"): t.get("Value") for t in instance.get("Tags") or ()}
                    annex = annexes.get(tags.get(key, ""))
                    if annex is not None:  # the whole value: foo's query never counts foobar
                        states = found.setdefault(annex, {})
                        states.setdefault(instance["State"]["Name"], []).append(
                            instance["InstanceId"])
        return found

    def annex_instances(self, annex_id: str, client_token: str,
                        tags: dict[str, str] | None = None) -> list[dict[str, str]]:
        """One request's pending and running instances (an auto annex's supply), each as
        {"id", "type", "tags" (key -> value)}; ``tags``: only those with these tag values too
        (one order's, by its order tag)."""
        wanted = {ANNEX_TAG: annex_id, CLIENT_TOKEN_TAG: client_token, **(tags or {})}
        filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in wanted.items()]
        filters.append({"Name": "instance-state-name", "Values": ["pending", "running"]})
        found = []
        for instance in self._instances(filters):
            have = {t.get("Key"): t.get("Value") for t in instance.get("Tags") or ()}
            if all(have.get(key) == value for key, value in wanted.items()):
                found.append({"id": instance["InstanceId"], "type": instance["InstanceType"],
                              "tags": have})
        return found

    def _instances(self, filters: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        with self._call("EC2 DescribeInstances"):
            for page in self._listing_ec2.get_paginator("describe_instances").paginate(
                    Filters=filters, PaginationConfig={"PageSize": 1000}):
                for reservation in page.get("Reservations", []):
                    yield from reservation.get("Instances", [])

    def lease_target(self, annex_id: str, owns: Callable[[str | None], bool] | None = None
                     ) -> dict[str, Any] | None:
        """The annex's lease target (Arn and parsed Input), or None if its rule is gone
        (or, with ``owns``, judging the rule's description, is not that request's rule)."""
        if owns is not None and not owns(self.rule_description(annex_id)):
            return None
        try:
            with self._call("EventBridge ListTargetsByRule"):
                targets = self.events.list_targets_by_rule(Rule=annex_id)["Targets"]
        except NotFound:
            return None
        for target in targets:
            if target.get("Id") == annex_id:
                return {"Arn": target["Arn"], "Input": json.loads(target.get("Input", "{}"))}
        return None

    def leases_in_force(self, function_arns: set[str]) -> set[str]:
        """Names of the region's rules that target one of the lease functions: one paginated
        ListRuleNamesByTarget per function (a region has one) -- one call for up to 100
        annexes (AWS's largest page), one more per 100 beyond.

        Which request a rule of that name belongs to is the journal's to say (see
        annexd.commands.status._lease): no second listing of every rule for its description.
        """
        targeted: set[str] = set()
        for arn in sorted(function_arns):
            with self._call("EventBridge ListRuleNamesByTarget"):
                targeted.update(name for page in self.events.get_paginator(
                    "list_rule_names_by_target").paginate(
                        TargetArn=arn, PaginationConfig={"PageSize": RULE_NAMES_PAGE})
                    for name in page.get("RuleNames", []))
        return targeted

    def live_fleets(self, annex_id: str, annex_type: str | None,
                    client_token: str | None) -> list[str]:
        """The request's fleets that may still hold or launch instances, as the lease
        function's teardown would find them (none for an on-demand annex)."""
        kinds = lease.FLEET_KINDS.get(annex_type or "", ("spot-fleet", "ec2-fleet"))
        with self._call("EC2 DescribeSpotFleetRequests/DescribeFleets"):
            return ((lease.find_fleets(self.ec2, annex_id, client_token)
                     if "spot-fleet" in kinds else []) +
                    (lease.find_ec2_fleets(self.ec2, annex_id, client_token)
                     if "ec2-fleet" in kinds else []))

    def teardown(self, annex_id: str, bucket: str | None, annex_type: str | None = None,
                 client_token: str | None = None,
                 report: Callable[[str], None] = lambda text: None,
                 owner: str | None = None) -> dict[str, Any]:
        """Everything the lease function does at expiry, now (to that request's resources
        only, with ``client_token``); ``report`` hears each step."""
        with self._call("annex teardown"):
            return lease.teardown(annex_id, bucket, self.lease_clients, annex_type,
                                  client_token, report, owner)

