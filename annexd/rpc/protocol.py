"""The request/reply protocol between ``condor_annex`` and ``condor_annexd``.

One JSON object per line over a local Unix stream socket; one request, one reply, per
connection.  Every message carries ``version``: a daemon refuses versions it does not speak,
so an old CLI talking to a new daemon gets a clear error instead of a misread request.

This module is shared by the CLI and the daemon, so it must stay light: no boto3, no botocore.
"""
from __future__ import annotations

import functools
import json
import re
import socket
import time
from typing import Any

from annexd.config import keytext


VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20
#: JSON nested deeper than this is refused before it is parsed (no recursion blow-ups).
MAX_JSON_DEPTH = 64
#: The most capacity one annex may ask for: AWS's default quota for one Spot Fleet.
MAX_CAPACITY = 10_000
#: The longest lease: one year.
MAX_LEASE_SECONDS = 366 * 86400
#: Values longer than this are shortened when an error message echoes them.
MAX_SHOWN_CHARACTERS = 80

# Patterns match the whole string: ``\Z``, not ``$``, which also matches before a final
# newline (jsonschema searches with Python's re).
#: An annex ID is the whole name: no truncation, no underscores (they separate the
#: ClientToken's UUID), at most 27 characters so ``<id>_<uuid4>`` fits EC2's 64.
ANNEX_NAME_PATTERN = r"^[A-Za-z0-9-]{1,27}\Z"
ANNEX_NAME_RULE = "1 to 27 letters, digits or dashes"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}\Z"
CONFIG_FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
USER_NAME_PATTERN = r"^[A-Za-z0-9._@-]{1,64}\Z"

_CREDENTIALS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["access_key_id", "secret_access_key"],
    "properties": {
        "access_key_id": {"type": "string", "maxLength": 256, "pattern": keytext.BARE_KEY},
        "secret_access_key": {"type": "string", "pattern": keytext.BARE_KEY},
    },
}

_CREATE_ANNEX = {
    "type": "object",
    "additionalProperties": False,
    "required": ["lease_duration"],
    # A fleet config (a Spot Fleet's, as the console exports it, or an EC2 Fleet's CreateFleet
    # input), or on-demand instances (then count is needed).
    # An auto annex (-auto) has no count: the daemon sizes it, up to auto.max_instances.
    "oneOf": [{"required": ["fleet_config"]}, {"required": ["on_demand", "count"],
                                             "not": {"required": ["auto"]}},
              {"required": ["on_demand", "auto"], "not": {"required": ["count"]}}],
    "properties": {
        "name": {"type": "string", "pattern": ANNEX_NAME_PATTERN},
        "lease_duration": {"type": "integer", "minimum": 1, "maximum": MAX_LEASE_SECONDS},
        "lease_function_arn": {"type": "string", "minLength": 1, "maxLength": 256},
        "count": {"type": "integer", "minimum": 1, "maximum": MAX_CAPACITY},
        "fleet_config": {"type": "object"},
        "auto": {"type": "object", "additionalProperties": False, "required": ["max_instances"],
                 "properties": {
                     "max_instances": {"type": "integer", "minimum": 1,
                                       "maximum": MAX_CAPACITY},
                     "max_cost": {"type": "number", "exclusiveMinimum": 0,
                                  "maximum": 1e9}}},
        "on_demand": {"type": "object", "additionalProperties": False, "properties": {
            "image_id": {"type": "string", "maxLength": 64},
            "instance_type": {"type": "string", "maxLength": 64},
            "key_name": {"type": "string", "maxLength": 255},
            "instance_profile_arn": {"type": "string", "maxLength": 2048},
            "security_group_ids": {"type": "array", "maxItems": 16,
                                   "items": {"type": "string", "maxLength": 64}}}},
        "config_source": {"type": "string", "maxLength": 4096},
        "region": {"type": "string", "pattern": REGION_PATTERN},
        "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
        # -setup's instance profile and security groups, from the user's configuration: for
        # instances whose config names none.
        "instance_profile_arn": {"type": "string", "minLength": 1, "maxLength": 2048},
        "security_group_ids": {"type": "array", "maxItems": 16,
                               "items": {"type": "string", "minLength": 1, "maxLength": 64}},
        # Who may run jobs on the annex (START); absent: the requesting user; empty: anyone.
        "owners": {"type": "array", "maxItems": 64,
                   "items": {"type": "string", "pattern": USER_NAME_PATTERN}},
        "idle_seconds": {"type": "integer", "minimum": 60, "maximum": 30 * 86400},
        "tags": {"type": "array", "maxItems": 40, "items": {
            "type": "object", "additionalProperties": False, "required": ["key", "value"],
            "properties": {"key": {"type": "string", "minLength": 1, "maxLength": 128,
                                   "pattern": "^(?!aws:)(?!htcondor:)"},
                           "value": {"type": "string", "maxLength": 256}}}},
        # The user's own config files (-config-dir), base64; and the pool IDTOKEN (-idtoken-file).
        "config_files": {"type": "object", "maxProperties": 64,
                         "propertyNames": {"pattern": CONFIG_FILE_NAME_PATTERN},
                         "additionalProperties": {"type": "string", "maxLength": 350000}},
        "idtoken": {"type": "string", "minLength": 1, "maxLength": 65536},
        # -aws-user-data: base64 of at most EC2's 16 KiB.
        "user_data": {"type": "string", "minLength": 1, "maxLength": 21848,
                      "pattern": "^[A-Za-z0-9+/]+={0,2}\\Z"},
    },
}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "command"],
    "properties": {
        "version": {"const": VERSION},
        "command": {"enum": ["ping", "list", "create", "setup", "check-setup", "status",
                             "off", "extend"]},
        "credentials": _CREDENTIALS,
        "region": {"type": "string", "pattern": REGION_PATTERN},
        "name": {"type": "string", "pattern": ANNEX_NAME_PATTERN},
        "lease_duration": {"type": "integer", "minimum": 1, "maximum": MAX_LEASE_SECONDS},
        "dry_run": {"type": "boolean"},
        # The caller asks for condor_annexd's own AWS identity by name (the original's
        # "FROM INSTANCE"), instead of sending keys.
        "daemon_identity": {"const": True},
        # create and off: stream each step as it starts (the user is at a terminal).
        "progress": {"const": True},
        # status: list each annex's instance IDs by state (-long, -classad).
        "instance_ids": {"const": True},
        # check-setup: what a create would use, from the user's configuration.
        "uses": {"type": "object", "additionalProperties": False, "properties": {
            "lease_function_arn": {"type": "string", "minLength": 1, "maxLength": 256},
            "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
            "instance_profile_arn": {"type": "string", "minLength": 1, "maxLength": 2048},
            "security_group_ids": {"type": "array", "maxItems": 16,
                                   "items": {"type": "string", "minLength": 1,
                                             "maxLength": 64}}}},
    },
    "allOf": [
        {
            "if": {"properties": {"command": {"const": "create"}}},
            "then": {"required": ["annex"], "properties": {"annex": _CREATE_ANNEX}},
        },
        {"if": {"properties": {"command": {"const": "off"}}}, "then": {"required": ["name"]}},
        {
            "if": {"properties": {"command": {"const": "extend"}}},
            "then": {"required": ["name", "lease_duration"]},
        },
    ],
}

#: Sent before the reply by long commands (setup): one line of progress for the user.
PROGRESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "progress"],
    "properties": {"version": {"const": VERSION}, "progress": {"type": "string"}},
}

#: Error kinds; the CLI maps each to an exit status (see condor_annex.cli.EXIT_CODES).
ERROR_KINDS = ("protocol", "invalid-request", "conflict", "aws", "rollback-incomplete",
               "internal", "interrupted", "busy")

REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "ok"],
    "properties": {
        "version": {"const": VERSION},
        "ok": {"type": "boolean"},
        "result": {"type": "object"},
        "notices": {"type": "array", "items": {"type": "string"}},
        "error": {
            "type": "object",
            "required": ["kind", "message"],
            "properties": {
                "kind": {"enum": list(ERROR_KINDS)},
                "message": {"type": "string"},
                "aws_code": {"type": ["string", "null"]},
                "request_id": {"type": ["string", "null"]},
            },
        },
    },
}


class ProtocolError(Exception):
    """A message that is not valid JSON, too large, or does not match its schema."""


def shown(value: Any, limit: int = MAX_SHOWN_CHARACTERS) -> str:
    """``value`` as text an error message may echo: shortened when long."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest, without parsing (or recursing)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def loads(text: str | bytes) -> Any:
    """Parse JSON nested at most MAX_JSON_DEPTH deep; ProtocolError says what is wrong."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(f"not UTF-8 ({error.reason})") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ProtocolError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ProtocolError(f"not valid JSON: {error.msg} at line {error.lineno} "
                            f"column {error.colno}") from None
    except (ValueError, RecursionError) as error:  # e.g. an integer of 5,000 digits
        raise ProtocolError(f"not usable JSON: {shown(error)}") from None


def _schema_error_text(error: Any) -> str:  # a jsonschema.ValidationError
    where = "/".join(str(part) for part in error.absolute_path) or "message"
    if error.absolute_path and error.absolute_path[0] == "credentials":
        return f"{where}: not a bare AWS key"  # never echo a secret, even a garbled one
    return shown(f"{where}: {error.message}", 300)


def validate(message: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``message`` if it matches ``schema``, else raise ProtocolError naming the field.

    jsonschema is imported here, on first use: it is most of a command's import time, and
    ``condor_annex -help`` (or a usage error) never needs it.
    """
    import jsonschema
    validator = _validator(jsonschema, id(schema), schema)
    errors = sorted(validator.iter_errors(message), key=lambda e: list(e.absolute_path))
    if errors:
        raise ProtocolError(_schema_error_text(errors[0]))
    return message


_VALIDATORS: dict[int, Any] = {}


def _validator(jsonschema: Any, key: int, schema: dict[str, Any]) -> Any:
    """One compiled validator per schema (the schemas are module constants)."""
    if key not in _VALIDATORS:
        _VALIDATORS[key] = jsonschema.Draft202012Validator(schema)
    return _VALIDATORS[key]


def validate_request(message: Any) -> dict[str, Any]:
    return validate(message, REQUEST_SCHEMA)


@functools.lru_cache(maxsize=None)
def _compiled(name: str) -> Any:
    import fastjsonschema  # here: compiled once, on the CLI's first reply
    return fastjsonschema.compile({"reply": REPLY_SCHEMA, "progress": PROGRESS_SCHEMA}[name])


def compile_reply_checks() -> None:
    """Compile the reply and progress checks now, instead of on the first reply: for a
    process that forks clients (the tests' fork server), which then start with them."""
    for name in ("reply", "progress"):
        _compiled(name)


def check_reply(message: Any, name: str = "reply") -> dict[str, Any]:
    """Check a message from the daemon against REPLY_SCHEMA (or PROGRESS_SCHEMA).

    The same schemas, compiled into Python by fastjsonschema: the CLI's replies come from the
    daemon it trusts, and importing jsonschema cost a command more CPU than all the rest of
    it.  Requests, which the daemon does not trust, are checked with jsonschema (above), whose
    errors name the field best.  tests/test_protocol.py holds both to the same verdicts.
    """
    from fastjsonschema import JsonSchemaException
    try:
        return _compiled(name)(message)
    except JsonSchemaException as error:
        raise ProtocolError(shown(str(error), 300)) from None


def validate_reply(message: Any) -> dict[str, Any]:
    return validate(message, REPLY_SCHEMA)


def ok_reply(result: dict[str, Any], notices: list[str] | None = None) -> dict[str, Any]:
    return {"version": VERSION, "ok": True, "result": result, "notices": list(notices or [])}


def error_reply(kind: str, message: str, *, aws_code: str | None = None,
                request_id: str | None = None, notices: list[str] | None = None) -> dict[str, Any]:
    return {
        "version": VERSION,
        "ok": False,
        "error": {"kind": kind, "message": message, "aws_code": aws_code, "request_id": request_id},
        "notices": list(notices or []),
    }


def progress_message(text: str) -> dict[str, Any]:
    return {"version": VERSION, "progress": text}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class Reader:
    """Reads newline-terminated JSON messages from a socket, one at a time.

    With ``deadline`` (a ``time.monotonic()`` value) each message must arrive by then, so a
    client trickling one byte at a time cannot hold the connection forever.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = bytearray()

    def _line(self, deadline: float | None) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise ProtocolError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProtocolError("the message did not arrive in time")
                self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise ProtocolError("the message did not arrive in time") from None
            if not chunk:
                if self._buffer:
                    break  # a last message without its newline
                raise ProtocolError("connection closed before a message arrived")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        if len(line) > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        return line

    def read(self, deadline: float | None = None) -> Any:
        line = self._line(deadline)
        try:
            return loads(line)
        except ProtocolError as error:
            raise ProtocolError(f"message: {error}") from None


def receive(sock: socket.socket, deadline: float | None = None) -> Any:
    """Read the one message a connection carries."""
    return Reader(sock).read(deadline)
