"""The lease function's deployment package: ``lambda/lease.py`` zipped as ``lease.py``.

The zip is byte-for-byte reproducible (fixed timestamp and mode), so its SHA-256 -- which
Lambda reports as ``CodeSha256`` -- identifies the code this release ships: ``-check-setup``
compares the two, and the S3 key carries it, so a new release updates the function.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import io
import zipfile

from annexd_lambda import lease

_EPOCH = (1980, 1, 1, 0, 0, 0)


@functools.lru_cache(maxsize=1)
def package() -> bytes:
    with open(lease.__file__, "rb") as source:
        code = source.read()
    member = zipfile.ZipInfo("lease.py", date_time=_EPOCH)
    member.external_attr = 0o644 << 16
    member.compress_type = zipfile.ZIP_DEFLATED
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, code)
    return buffer.getvalue()


def code_sha256() -> str:
    """What Lambda's GetFunction reports as CodeSha256 for this package."""
    return base64.b64encode(hashlib.sha256(package()).digest()).decode()


def s3_key() -> str:
    return f"lambda/lease-{hashlib.sha256(package()).hexdigest()[:16]}.zip"
