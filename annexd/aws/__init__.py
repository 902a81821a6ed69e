"""The daemon's only door to AWS, split by who calls: the create sequence, the operations on
live annexes, and the one-time setup, over one session per (credentials, region) and one error
vocabulary (:mod:`.errors`)."""
from __future__ import annotations

from annexd.aws.create import LEASE_METADATA, CreateCalls
from annexd.aws.errors import AwsError, Denied, InvalidInput, NotFound, Transient, translate
from annexd.aws.operate import OperateCalls
from annexd.aws.session import LAUNCH_READ_TIMEOUT_SECONDS
from annexd.aws.setup import SetupCalls

__all__ = ["AnnexAws", "AwsError", "Denied", "InvalidInput", "NotFound", "Transient",
           "translate", "LEASE_METADATA", "LAUNCH_READ_TIMEOUT_SECONDS"]


class AnnexAws(CreateCalls, OperateCalls, SetupCalls):
    """Every AWS call of an annex's life, for one set of credentials and one region."""
