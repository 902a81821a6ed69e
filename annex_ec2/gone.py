"""Is the annex's config object gone, or is this instance only denied it?

On AWS a missing object answers 404 only to a caller that may list the bucket; to any other
it answers 403 AccessDenied, exactly as a real denial does.  The instance role may therefore
list the bucket, but only for a prefix that is a whole config key (``s3:prefix`` like
``config-*.tar.gz``; the single-object role template: the one key): enough to ask "is this
key there?", too little to enumerate other annexes.  So a 403 or 404 is settled by one such
listing -- the object is gone only if the listing, itself allowed, does not show it.  A
403 is never taken for "gone" on its own: a policy mistake would otherwise shut down every
annex instance at once.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")

#: What S3 answers for a missing object (with s3:ListBucket: 404; without: 403).
MISSING_OR_DENIED = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied",
                               "Forbidden"})


class Gone(Exception):
    """The object does not exist (any more): the annex's lease has ended."""


def code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether ``key`` is in ``bucket``, by a listing of exactly that prefix (the first key
    listed under a prefix equal to a key is that key, if it exists)."""
    reply = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(item.get("Key") == key for item in reply.get("Contents", []))


def read(s3: Any, bucket: str, key: str, call: Callable[[], T]) -> T:
    """``call()`` (a read of the object); :class:`Gone` if it failed because the object does
    not exist.  Any other failure -- a real denial, or a listing that is denied too -- is
    raised as it is.

    An object the read missed and the listing shows was written in between (condor_annexd
    copies the configuration for an instance while its boot waits for it): it is read once
    more, and what that read raises is raised -- a real denial again, so never "gone"."""
    try:
        return call()
    except ClientError as error:
        if code(error) not in MISSING_OR_DENIED:
            raise
        try:
            there = exists(s3, bucket, key)
        except ClientError:
            raise error from None
        if not there:
            raise Gone(f"s3://{bucket}/{key} does not exist") from None
    return call()
