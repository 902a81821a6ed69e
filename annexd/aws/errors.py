"""One small error vocabulary for every AWS call the daemon makes.

botocore raises many exception types; the create sequence and the operations only need to
know whether a call failed for good (:class:`InvalidInput`, :class:`Denied`), because the thing
is not there (:class:`NotFound`), or may succeed if tried again (:class:`Transient`).  Each error
carries the operation, the AWS error code and the request id for the user's one-line error.
"""
from __future__ import annotations

import http.client
import re

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

NOT_FOUND_CODES = frozenset({
    "ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "NotFound",
    "InvalidSpotFleetRequestId.NotFound", "InvalidInstanceID.NotFound", "NoSuchEntity",
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


#: The longest AWS message an error line carries.
MAX_MESSAGE_CHARACTERS = 400
#: The most of a non-AWS answer (an HTML page, another service's XML) an error line shows.
SUMMARY_CHARACTERS = 80
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_XML_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_TAG = re.compile(r"<[^>]*>")


def _markup(text: str) -> bool:
    """Whether ``text`` is an HTML or XML document rather than AWS's one-line message."""
    start = text.lstrip()[:200].lower()
    return start.startswith(("<", "b'<", 'b"<')) or "<html" in start or "<!doctype" in start


def summarise_body(text: str, status: int | None = None) -> str:
    """A page that is not an AWS error (a proxy's HTML, another service's XML) in a few words:
    the HTTP status and reason, and the page's title or first words."""
    title = _TITLE.search(text)
    code = _XML_CODE.search(text)
    if title:
        gist = title.group(1)
    elif code:
        gist = f"an XML error {code.group(1)} from another service"
    else:
        gist = _TAG.sub(" ", text)
    gist = " ".join(gist.split())
    if len(gist) > SUMMARY_CHARACTERS:
        gist = gist[:SUMMARY_CHARACTERS] + "..."
    where = f"HTTP {status} {http.client.responses.get(status, '')}".rstrip() \
        if status else "an answer"
    return f"{where} that is not from AWS ({gist or 'empty'}): check the endpoint"


class AwsError(Exception):
    """An AWS call failed; ``str()`` is the line a user sees."""

    def __init__(self, operation: str, code: str, message: str, request_id: str | None = None):
        super().__init__(operation, code, message, request_id)
        self.operation, self.code, self.request_id = operation, code, request_id
        self.message = " ".join(message.split())  # one line, whatever AWS sent
        if len(self.message) > MAX_MESSAGE_CHARACTERS:
            self.message = self.message[:MAX_MESSAGE_CHARACTERS] + "..."

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
        if _markup(message):
            message = summarise_body(message, status)
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
        text = str(error)
        if isinstance(error, ResponseParserError) and _markup(text.partition(":")[2]):
            text = summarise_body(text.partition(":")[2])
        return Transient(operation, type(error).__name__, text)
    return AwsError(operation, type(error).__name__, str(error))

