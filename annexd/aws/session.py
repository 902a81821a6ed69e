"""Clients for one set of credentials and one region, and the one way every call is made.

Every call goes through :meth:`AwsSession._call`, which turns botocore's exceptions into
:mod:`annexd.aws.errors` and gives the fault-injection harness its crash points.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import boto3
from annexd_lambda import lease
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from .. import faults
from .errors import AwsError, translate

#: Launch calls (RequestSpotFleet, RunInstances) wait at least this long for their reply.
LAUNCH_READ_TIMEOUT_SECONDS = 60.0

#: One botocore session for the whole daemon: it caches the service models, so a request's
#: clients take milliseconds instead of a tenth of a second each.  Credentials are passed per
#: client and live only as long as the request's clients.  Client creation from a shared
#: session is not thread-safe, hence the lock; the clients themselves are.
_SHARED = boto3.session.Session()
_SHARED_LOCK = threading.Lock()


class AwsSession:
    """The clients of one set of credentials in one region, made on first use."""

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

    def account(self) -> str:
        """The AWS account of these credentials (STS GetCallerIdentity)."""
        with self._call("STS GetCallerIdentity"):
            return self.sts.get_caller_identity()["Account"]
