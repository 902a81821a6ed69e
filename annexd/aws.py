"""The daemon's only door to AWS: boto3 clients built from the knobs, and one error vocabulary.

Every call goes through :meth:`AnnexAws._call`, which turns botocore's many exception types
into a handful the create sequence understands (:class:`NotFound`, :class:`Denied`,
:class:`InvalidInput`, :class:`Transient`, else :class:`AwsError`), each carrying the
operation, the AWS error code and the request id for the user's one-line error.
"""
from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

from annexd_lambda import lease
from annexd_lambda.lease import ANNEX_TAG

#: Launch calls (RequestSpotFleet, RunInstances) wait at least this long for their reply.
LAUNCH_READ_TIMEOUT_SECONDS = 60.0

#: S3 object metadata (x-amz-meta-...) of the config object: the lease end in force.
LEASE_METADATA = "annex-lease-expiration"

from . import faults

NOT_FOUND_CODES = frozenset({
    "ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "NotFound",
    "InvalidSpotFleetRequestId.NotFound", "InvalidInstanceID.NotFound",
})
DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
    "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException",
    "InvalidAccessKeyId",
})
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable",
    "InternalError", "InternalFailure", "RequestTimeout", "SlowDown", "TooManyRequestsException",
    "Unavailable", "InsufficientInstanceCapacity",
})


class AwsError(Exception):
    """An AWS call failed; ``str()`` is the line a user sees."""

    def __init__(self, operation: str, code: str, message: str, request_id: str | None = None):
        super().__init__(operation, code, message, request_id)
        self.operation, self.code, self.request_id = operation, code, request_id
        self.message = " ".join(message.split())  # one line, whatever AWS sent

    def __str__(self) -> str:
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.operation} failed: {self.code}: {self.message}{rid}"


class NotFound(AwsError):
    """The resource does not exist (or no longer does)."""


class Denied(AwsError):
    """The credentials are wrong or lack a permission."""


class InvalidInput(AwsError):
    """AWS rejected a parameter; retrying the same request cannot help."""


class Transient(AwsError):
    """Throttling, a 5xx or a broken connection: the same call may succeed later."""


def translate(operation: str, error: Exception) -> AwsError:
    """Map a botocore exception to our vocabulary."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = details.get("Code") or "Unknown"
        message = details.get("Message") or str(error)
        request_id = error.response.get("ResponseMetadata", {}).get("RequestId")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in NOT_FOUND_CODES or code.endswith(".NotFound"):
            kind = NotFound
        elif code in DENIED_CODES:
            kind = Denied
        elif code in TRANSIENT_CODES or status >= 500:
            kind = Transient
        else:
            kind = InvalidInput
        return kind(operation, code, message, request_id)
    if isinstance(error, (BotoConnectionError, HTTPClientError, ResponseParserError)):
        # resets, timeouts, and garbled answers (a proxy's or an emulator's error page)
        return Transient(operation, type(error).__name__, str(error))
    return AwsError(operation, type(error).__name__, str(error))


#: One botocore session for the whole daemon: it caches the service models, so a request's
#: clients take milliseconds instead of a tenth of a second each.  Credentials are passed per
#: client and live only as long as the request's clients.  Client creation from a shared
#: session is not thread-safe, hence the lock; the clients themselves are.
_SHARED = boto3.session.Session()
_SHARED_LOCK = threading.Lock()


class AnnexAws:
    """The AWS calls of an annex's life, for one set of credentials and one region."""

    def __init__(self, *, region: str, endpoints: dict[str, str | None],
                 credentials: dict[str, str] | None, max_attempts: int,
                 timeout_seconds: float = 60.0):
        self._region = region
        self._credentials = {"aws_access_key_id": credentials["access_key_id"],
                             "aws_secret_access_key": credentials["secret_access_key"]} \
            if credentials else {}
        self._endpoints = endpoints
        self._config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                              connect_timeout=min(10.0, timeout_seconds),
                              read_timeout=timeout_seconds)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, service: str, key: str | None = None, **config: Any) -> Any:
        """One client per service, made on first use (a create never needs CloudFormation)."""
        key = key or service
        with self._lock:
            if key not in self._clients:
                endpoint = self._endpoints.get(service)
                extra = dict(config)
                if service == "s3" and endpoint:
                    extra["s3"] = {"addressing_style": "path"}  # emulators, VPC endpoints
                with _SHARED_LOCK:
                    self._clients[key] = _SHARED.client(
                        service, region_name=self._region, endpoint_url=endpoint,
                        config=self._config.merge(Config(**extra)) if extra else self._config,
                        **self._credentials)
            return self._clients[key]

    ec2 = property(lambda self: self._client("ec2"))
    events = property(lambda self: self._client("events"))
    lambda_ = property(lambda self: self._client("lambda"))
    s3 = property(lambda self: self._client("s3"))
    cloudformation = property(lambda self: self._client("cloudformation"))
    sts = property(lambda self: self._client("sts"))

    @property
    def _fleet_ec2(self) -> Any:
        """EC2 without blind botocore retries, and with patience, for the launch calls only.

        A retry after a lost reply would create a second fleet wherever ClientToken is not
        honoured (moto).  The create sequence retries it itself, after looking the first
        attempt's fleet up by its token.  And a launch is the one call whose outcome must not
        be guessed: a reply given up on too early leaves an attempt still running on the
        service's side, which the look-up before the retry cannot see yet.  So launch calls
        wait at least LAUNCH_READ_TIMEOUT_SECONDS, whatever ANNEXD_AWS_TIMEOUT_SECONDS says.
        """
        return self._client("ec2", "ec2-once",
                            retries={"mode": "standard", "total_max_attempts": 1},
                            read_timeout=max(self._config.read_timeout,
                                             LAUNCH_READ_TIMEOUT_SECONDS))

    @contextlib.contextmanager
    def _call(self, operation: str) -> Iterator[None]:
        faults.crash_point(operation, "before")
        try:
            yield
        except lease.LeaseError as error:
            raise AwsError(operation, "Unsuccessful", str(error)) from None
        except (ClientError, BotoCoreError, ResponseParserError) as error:
            raise translate(operation, error) from None
        finally:
            faults.crash_point(operation, "after")  # whatever the call's outcome

    @property
    def lease_clients(self) -> lease.Clients:
        return lease.Clients(ec2=self.ec2, events=self.events, s3=self.s3)

    def check_function(self, arn: str) -> None:
        with self._call("Lambda GetFunction"):
            self.lambda_.get_function(FunctionName=arn)

    def rule_exists(self, name: str) -> bool:
        try:
            with self._call("EventBridge DescribeRule"):
                self.events.describe_rule(Name=name)
        except NotFound:
            return False
        return True

    def put_config(self, bucket: str, key: str, body: bytes, annex_id: str,
                   lease_end: int) -> None:
        """Upload the annex's config; its lease end travels as object metadata, which the
        instances re-read (so a lease change reaches them without rewriting the secrets)."""
        with self._call("S3 PutObject"):
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256",
                               ContentType="application/gzip", Tagging=f"{ANNEX_TAG}={annex_id}",
                               Metadata={LEASE_METADATA: str(lease_end)})

    def set_config_lease_end(self, bucket: str, key: str, lease_end: int) -> None:
        """Replace the config object's lease-end metadata in place (body and tags kept)."""
        with self._call("S3 CopyObject"):
            self.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                                MetadataDirective="REPLACE", TaggingDirective="COPY",
                                Metadata={LEASE_METADATA: str(lease_end)},
                                ContentType="application/gzip", ServerSideEncryption="AES256")

    def account(self) -> str:
        """The AWS account of these credentials (STS GetCallerIdentity)."""
        with self._call("STS GetCallerIdentity"):
            return self.sts.get_caller_identity()["Account"]

    def delete_config(self, bucket: str, key: str) -> None:
        with self._call("S3 DeleteObject"):
            lease.delete_config(self.s3, bucket, key)

    def put_rule(self, name: str, schedule: str, annex_id: str) -> str:
        with self._call("EventBridge PutRule"):
            reply = self.events.put_rule(
                Name=name, ScheduleExpression=schedule, State="ENABLED",
                Description=f"HTCondor annex {annex_id}: enforce the lease",
                Tags=[{"Key": ANNEX_TAG, "Value": annex_id}])
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
            found = lease.find_instances(self.ec2, annex_id)
            if not found:
                return []
            pages = self.ec2.get_paginator("describe_instances").paginate(
                InstanceIds=found, Filters=[{"Name": f"tag:{lease.CLIENT_TOKEN_TAG}",
                                             "Values": [client_token]}])
            return [i["InstanceId"] for page in pages for r in page.get("Reservations", [])
                    for i in r.get("Instances", [])]

    def terminate_instances(self, instance_ids: list[str]) -> None:
        with self._call("EC2 TerminateInstances"):
            lease.terminate_instances(self.ec2, instance_ids)

    def find_fleets(self, annex_id: str, client_token: str | None = None) -> list[str]:
        with self._call("EC2 DescribeSpotFleetRequests"):
            return lease.find_fleets(self.ec2, annex_id, client_token)

    def cancel_fleets(self, fleet_ids: list[str]) -> None:
        with self._call("EC2 CancelSpotFleetRequests"):
            lease.cancel_fleets(self.ec2, fleet_ids)

    # -- operating annexes -------------------------------------------------------------------

    def instance_states(self, annex_id: str) -> dict[str, int]:
        """How many of the annex's instances are in each state (terminated ones not counted).

        One paginated, tag-filtered DescribeInstances: cost grows with the annex's instances,
        never with the account's.
        """
        counts: dict[str, int] = {}
        filters = [{"Name": f"tag:{ANNEX_TAG}", "Values": [annex_id]},
                   {"Name": "instance-state-name", "Values": lease.LIVE_INSTANCE_STATES}]
        with self._call("EC2 DescribeInstances"):
            for page in self.ec2.get_paginator("describe_instances").paginate(
                    Filters=filters, PaginationConfig={"PageSize": 1000}):
                for reservation in page.get("Reservations", []):
                    for instance in reservation.get("Instances", []):
                        if lease.has_annex_tag(instance.get("Tags"), annex_id):
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

    def teardown(self, annex_id: str, bucket: str | None) -> dict[str, Any]:
        """Everything the lease function does at expiry, now."""
        with self._call("annex teardown"):
            return lease.teardown(annex_id, bucket, self.lease_clients)

    # -- one-time setup (CloudFormation) -----------------------------------------------------

    def describe_stack(self, name: str) -> dict[str, Any] | None:
        """The stack, or None if it does not exist."""
        try:
            with self._call("CloudFormation DescribeStacks"):
                return self.cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        except InvalidInput as error:
            if "does not exist" in error.message:
                return None
            raise

    def stack_template(self, name: str) -> str:
        with self._call("CloudFormation GetTemplate"):
            body = self.cloudformation.get_template(StackName=name)["TemplateBody"]
        return body if isinstance(body, str) else json.dumps(body)

    def create_stack(self, name: str, body: str, parameters: dict[str, str]) -> None:
        with self._call("CloudFormation CreateStack"):
            self.cloudformation.create_stack(
                StackName=name, TemplateBody=body, Parameters=_stack_parameters(parameters),
                Capabilities=["CAPABILITY_IAM"], OnFailure="DELETE",
                Tags=[{"Key": "htcondor:AnnexSetup", "Value": name}])

    def update_stack(self, name: str, body: str, parameters: dict[str, str],
                     keep: list[str]) -> bool:
        """Update the stack, keeping the ``keep`` parameters' values; False if no change."""
        previous = [{"ParameterKey": key, "UsePreviousValue": True} for key in keep]
        try:
            with self._call("CloudFormation UpdateStack"):
                self.cloudformation.update_stack(
                    StackName=name, TemplateBody=body,
                    Parameters=_stack_parameters(parameters) + previous,
                    Capabilities=["CAPABILITY_IAM"])
        except InvalidInput as error:
            if "No updates are to be performed" in error.message:
                return False
            raise
        return True

    def put_code(self, bucket: str, key: str, body: bytes) -> None:
        """Upload the lease function's code unless that exact key is already there."""
        try:
            with self._call("S3 HeadObject"):
                self.s3.head_object(Bucket=bucket, Key=key)
            return
        except NotFound:
            pass
        except InvalidInput as error:  # HEAD errors carry no body: 404 comes back as "404"
            if error.code != "404":
                raise
        with self._call("S3 PutObject"):
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")

    def update_function_code(self, arn: str, bucket: str, key: str) -> None:
        with self._call("Lambda UpdateFunctionCode"):
            self.lambda_.update_function_code(FunctionName=arn, S3Bucket=bucket, S3Key=key)

    def function_code_sha256(self, arn: str) -> str:
        with self._call("Lambda GetFunction"):
            return self.lambda_.get_function(FunctionName=arn)["Configuration"]["CodeSha256"]


def _stack_parameters(parameters: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": key, "ParameterValue": value}
            for key, value in sorted(parameters.items())]
