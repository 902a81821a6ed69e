"""Clients for one set of credentials and one region, and the one way every call is made.

Every call goes through :meth:`AwsSession._call`, which turns botocore's exceptions into
:mod:`annexd.aws.errors` and gives the fault-injection harness its crash points.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import threading
from typing import Any, Iterator

import boto3
import botocore.session
from annexd_lambda import lease
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from annexd.aws import faults
from annexd.rpc import protocol
from annexd.aws.errors import AwsError, translate

log = logging.getLogger("annexd.aws")

#: The libraries whose own failures are AWS failures to the user (never "internal errors").
AWS_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer")

#: Launch calls (RequestSpotFleet, RunInstances) wait at least this long for their reply.
LAUNCH_READ_TIMEOUT_SECONDS = 60.0

#: One botocore session for the whole daemon: it caches the service models.  Client creation
#: from a shared session is not thread-safe, hence the lock; the clients themselves are.
_CORE = botocore.session.Session()
_SHARED = boto3.session.Session(botocore_session=_CORE)
_SHARED_LOCK = threading.Lock()


def _as_sent(text: str) -> str:
    return text


#: The session of the instance listings (DescribeInstances for -status, -off and the
#: backstop): its parser leaves timestamps as the text AWS sent.  A listing reads only IDs,
#: states and tags, and parsing an instance's nine timestamps with dateutil was 40% of the
#: CPU of listing 200 instances (126 -> 74 ms).  It shares the daemon session's data loader,
#: which caches the service models: a session of its own loaded EC2's again (+40 MiB).
_LISTINGS_CORE = botocore.session.Session()
_LISTINGS_CORE.register_component("data_loader", _CORE.get_component("data_loader"))
_LISTINGS_CORE.get_component("response_parser_factory").set_parser_defaults(
    timestamp_parser=_as_sent)
_LISTINGS = boto3.session.Session(botocore_session=_LISTINGS_CORE)

#: How many clients the daemon keeps: enough for every service of dozens of users' keys in a
#: few regions; the least recently used one is closed beyond that, so memory stays flat.
MAX_CACHED_CLIENTS = 128


def service_model(service: str) -> Any:
    """botocore's model of ``service`` (a ``botocore.model.ServiceModel``), from the daemon's
    one session, whose loader has parsed it once for every client.  A session of its own
    (``botocore.session.get_session()``, as the launch configs' validation once made) registers
    botocore's handlers again and parses EC2's model again: +40 MiB, and a tenth of a test
    daemon's CPU."""
    with _SHARED_LOCK:
        return _CORE.get_service_model(service)


def default_credentials() -> Any:
    """What botocore's default chain (the environment, ~/.aws, the instance role...) finds
    now -- botocore ``Credentials`` with their ``method`` --, or None.  Resolved afresh on
    each call, by the daemon's one session's resolver: a new session for it registered every
    one of botocore's handlers again, a tenth of the daemon's start (docs/testing.md)."""
    with _SHARED_LOCK:
        resolver = _CORE.get_component("credential_provider")
    return resolver.load_credentials()


def raised_by_aws_library(error: BaseException) -> bool:
    """Whether ``error`` was raised inside botocore (or the libraries under it)."""
    traceback, module = error.__traceback__, ""
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        traceback = traceback.tb_next
    return module.split(".")[0] in AWS_LIBRARIES


class ClientCache:
    """botocore clients reused across requests, per (credentials, region, service, settings).

    Building a client is most of the daemon's CPU per request (measured: half of it), and
    every client built and dropped leaves memory behind; botocore clients are thread-safe, so
    one per key serves every request.  The key holds a digest of the secret key, never the
    secret itself (the client holds the credentials, as it must to sign).
    """

    def __init__(self, size: int = MAX_CACHED_CLIENTS):
        self._size = size
        self._clients: collections.OrderedDict[tuple[Any, ...], Any] = \
            collections.OrderedDict()
        self._lock = threading.Lock()
        self.built = 0  # for tests and the benchmark: clients made so far

    def get(self, key: tuple[Any, ...], make: Any) -> Any:
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
        with _SHARED_LOCK:
            client = make()
        with self._lock:
            if key in self._clients:  # another thread made it meanwhile: use that one
                client.close()
                return self._clients[key]
            self._clients[key] = client
            self.built += 1
            while len(self._clients) > self._size:
                self._clients.popitem(last=False)[1].close()
            return client


CLIENTS = ClientCache()


def _identity_key(credentials: dict[str, str] | None) -> tuple[str, str] | None:
    if not credentials:
        return None  # the daemon's own chain (which refreshes itself inside the client)
    digest = hashlib.sha256(credentials["secret_access_key"].encode()).hexdigest()
    return credentials["access_key_id"], digest


class AwsSession:
    """The clients of one set of credentials in one region, made on first use."""

    def __init__(self, *, region: str, endpoints: dict[str, str | None],
                 credentials: dict[str, str] | None, max_attempts: int,
                 timeout_seconds: float = 60.0, function_check_seconds: float = 0.0):
        self._region = region
        self._credentials = {"aws_access_key_id": credentials["access_key_id"],
                             "aws_secret_access_key": credentials["secret_access_key"]} \
            if credentials else {}
        self._endpoints = endpoints
        self._config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                              connect_timeout=min(10.0, timeout_seconds),
                              read_timeout=timeout_seconds)
        self._identity = _identity_key(credentials)
        self._settings = (max_attempts, timeout_seconds)
        self._function_check_seconds = function_check_seconds

    def _client(self, service: str, key: str | None = None,
                session: boto3.session.Session = _SHARED, **config: Any) -> Any:
        """The shared client for this service (made on first use: a create never needs
        CloudFormation); ``key`` names a variant with other ``config`` or ``session``."""
        endpoint = self._endpoints.get(service)

        def make() -> Any:
            extra = dict(config)
            if service == "s3" and endpoint:
                extra["s3"] = {"addressing_style": "path"}  # emulators, VPC endpoints
            return session.client(
                service, region_name=self._region, endpoint_url=endpoint,
                config=self._config.merge(Config(**extra)) if extra else self._config,
                **self._credentials)

        return CLIENTS.get((key or service, self._region, endpoint, self._identity,
                            self._settings), make)

    region = property(lambda self: self._region)
    ec2 = property(lambda self: self._client("ec2"))
    events = property(lambda self: self._client("events"))
    lambda_ = property(lambda self: self._client("lambda"))
    s3 = property(lambda self: self._client("s3"))
    cloudformation = property(lambda self: self._client("cloudformation"))
    sts = property(lambda self: self._client("sts"))
    iam = property(lambda self: self._client("iam"))

    @property
    def _listing_ec2(self) -> Any:
        """EC2 for the instance listings: timestamps left as text (see _LISTINGS)."""
        return self._client("ec2", "ec2-listing", session=_LISTINGS)

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
        except Exception as error:
            if not raised_by_aws_library(error):
                raise
            # botocore choking on an answer (seen: a KeyError parsing another service's
            # reply, when a secret key was given as the access key ID): one line for the user.
            log.warning("%s: botocore failed: %r", operation, error)
            raise AwsError(operation, type(error).__name__,
                           f"the answer could not be read ({protocol.shown(repr(error))}); "
                           "check the endpoint and the key files") from None
        finally:
            faults.crash_point(operation, "after")  # whatever the call's outcome

    @property
    def lease_clients(self) -> lease.Clients:
        return lease.Clients(ec2=self.ec2, events=self.events, s3=self.s3)

    def account(self) -> str:
        """The AWS account of these credentials (STS GetCallerIdentity)."""
        return self.caller()[0]

    def caller(self) -> tuple[str, str, str]:
        """(account, principal ARN, user ID) of these credentials (STS GetCallerIdentity)."""
        with self._call("STS GetCallerIdentity"):
            reply = self.sts.get_caller_identity()
        return reply["Account"], reply["Arn"], reply["UserId"]

    def principal_id(self) -> str:
        """The ``aws:userid`` of these credentials (STS GetCallerIdentity's UserId): the
        owner an annex's resources are tagged with, which the user policy matches."""
        return owner_id(self.caller()[2])


def owner_id(user_id: str) -> str:
    """``user_id`` if it can name an annex owner (a tag value, a key part); AwsError if not."""
    if not lease.OWNER.fullmatch(user_id):
        raise AwsError("STS GetCallerIdentity", "Unsuccessful",
                       f"the caller's user ID {protocol.shown(user_id)!r} cannot name an "
                       "annex owner")
    return user_id
