"""A small IMDSv2 client (token first, then reads), honouring botocore's endpoint variable.

``AWS_EC2_METADATA_SERVICE_ENDPOINT`` redirects it (tests run a fake on 127.0.0.1), exactly
as it redirects botocore's own metadata lookups.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

DEFAULT_ENDPOINT = "http://169.254.169.254/"
TOKEN_TTL_SECONDS = 21600


class MetadataError(Exception):
    """The metadata service did not answer as expected (usually worth retrying)."""


def endpoint() -> str:
    return os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


class Imds:
    def __init__(self, timeout: float = 2.0):
        self.base, self.timeout = endpoint(), timeout
        self._token: str | None = None

    def _open(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as error:
            raise MetadataError(f"{request.get_method()} {request.full_url}: {error}") from None

    def token(self) -> str:
        if self._token is None:
            request = urllib.request.Request(
                f"{self.base}/latest/api/token", method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
            self._token = self._open(request).decode()
        return self._token

    def get(self, path: str) -> str:
        request = urllib.request.Request(f"{self.base}/latest/{path}",
                                         headers={"X-aws-ec2-metadata-token": self.token()})
        return self._open(request).decode()

    def instance_id(self) -> str:
        return self.get("meta-data/instance-id").strip()

    def region(self) -> str:
        return self._json("dynamic/instance-identity/document")["region"]

    def instance_profile_arn(self) -> str:
        return self._json("meta-data/iam/info")["InstanceProfileArn"]

    def _json(self, path: str) -> dict[str, Any]:
        try:
            return json.loads(self.get(path))
        except ValueError as error:
            raise MetadataError(f"{path}: not JSON ({error})") from None
