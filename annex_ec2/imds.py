"""A small IMDSv2 client (token first, then reads), honouring botocore's endpoint variable.

``AWS_EC2_METADATA_SERVICE_ENDPOINT`` redirects it (tests run a fake on 127.0.0.1), exactly
as it redirects botocore's own metadata lookups.  The session token is renewed before it
expires, and once more when the service refuses it, so that a long-running reader (the
interruption watcher) keeps working for the instance's whole life.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

DEFAULT_ENDPOINT = "http://169.254.169.254/"
TOKEN_TTL_SECONDS = 21600
#: Renew the token this long before IMDS would stop accepting it.
TOKEN_MARGIN_SECONDS = 60


class MetadataError(Exception):
    """The metadata service did not answer as expected (usually worth retrying)."""


def endpoint() -> str:
    return os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


class Imds:
    def __init__(self, timeout: float = 2.0):
        self.base, self.timeout = endpoint(), timeout
        self._token: str | None = None
        self._token_renew_at = 0.0

    def _open(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as error:
            raise MetadataError(f"{request.get_method()} {request.full_url}: {error}") from error

    def token(self) -> str:
        if self._token is None or time.monotonic() >= self._token_renew_at:
            request = urllib.request.Request(
                f"{self.base}/latest/api/token", method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
            self._token = self._open(request).decode()
            self._token_renew_at = time.monotonic() + TOKEN_TTL_SECONDS - TOKEN_MARGIN_SECONDS
        return self._token

    def _read(self, path: str) -> bytes:
        request = urllib.request.Request(f"{self.base}/latest/{path}",
                                         headers={"X-aws-ec2-metadata-token": self.token()})
        return self._open(request)

    def get(self, path: str) -> str:
        """The document at ``latest/<path>``; MetadataError if it cannot be read."""
        try:
            return self._read(path).decode()
        except MetadataError as error:
            if _status(error) != 401:
                raise
        self._token = None  # refused: the service restarted, or the clock jumped
        return self._read(path).decode()

    def get_optional(self, path: str) -> str | None:
        """Like :meth:`get`, but None where the service answers 404: the document does not
        exist (now), as with a Spot notice that has not been given."""
        try:
            return self.get(path)
        except MetadataError as error:
            if _status(error) == 404:
                return None
            raise

    def instance_id(self) -> str:
        return self.get("meta-data/instance-id").strip()

    def region(self) -> str:
        return self._json("dynamic/instance-identity/document")["region"]

    def instance_profile_arn(self) -> str:
        return self._json("meta-data/iam/info")["InstanceProfileArn"]

    def _json(self, path: str) -> dict[str, Any]:
        return parse_json(path, self.get(path))


def parse_json(path: str, text: str) -> dict[str, Any]:
    """A metadata document that must be a JSON object."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise MetadataError(f"{path}: not JSON ({error})") from None
    if not isinstance(document, dict):
        raise MetadataError(f"{path}: not a JSON object: {text[:80]!r}")
    return document


def _status(error: MetadataError) -> int | None:
    """The HTTP status behind ``error``, if the service answered at all."""
    cause = error.__cause__
    return cause.code if isinstance(cause, urllib.error.HTTPError) else None
