"""moto's request recorder, and what each recorded request was: who, which service, which
operation, with which parameters.

The recorder (``/moto-api/recorder/...``) writes every request the server receives, one JSON
object per line: headers, method, URL, body.  The caller is the access key in the SigV4
``Authorization`` header, so one recording serves many principals when each uses a key of
its own.
"""
from __future__ import annotations

import base64
import json
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/")
#: Query-protocol services: the operation is the form body's ``Action``.
QUERY_SERVICES = frozenset({"ec2", "iam", "sts", "cloudformation"})


class Recorder:
    """``with Recorder(url): ...`` records what happens inside; ``calls()`` reads it back."""

    def __init__(self, url: str):
        self.url = url

    def _post(self, what: str) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/recorder/{what}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def __enter__(self) -> "Recorder":
        self._post("reset-recording")
        self._post("start-recording")
        return self

    def __exit__(self, *exc: object) -> None:
        self._post("stop-recording")

    def calls(self) -> list["Call"]:
        with urllib.request.urlopen(f"{self.url}/moto-api/recorder/download-recording",
                                    timeout=30) as reply:
            text = reply.read().decode()
        return [call for line in text.splitlines() if line.strip()
                for call in [parse(json.loads(line))] if call is not None]


@dataclass(frozen=True)
class Call:
    """One recorded AWS request."""

    key_id: str
    service: str
    region: str
    operation: str
    #: Query services: the flat form fields; JSON services: the body; S3 and Lambda: the
    #: REST call's parts (see :func:`_rest`).
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.service}:{self.operation}"

    def indexed(self, prefix: str) -> list[str]:
        """Values of a query list parameter: ``InstanceId.1``, ``InstanceId.2``..."""
        pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)$")
        found = sorted((int(m.group(1)), v) for k, v in self.params.items()
                       for m in [pattern.match(k)] if m)
        return [v for _, v in found]

    def tags(self, prefix: str, resource_type: str | None = None) -> dict[str, str]:
        """Tags of a query ``TagSpecification.N`` list (of ``resource_type``, if given), or
        of a plain ``Tag.N`` list when ``prefix`` ends with ``Tag``."""
        if prefix.endswith("Tag"):
            return _pairs(self.params, prefix)
        found: dict[str, str] = {}
        for n in range(1, 50):
            spec = f"{prefix}.{n}"
            kind = self.params.get(f"{spec}.ResourceType")
            if kind is None:
                break
            if resource_type is None or kind == resource_type:
                found.update(_pairs(self.params, f"{spec}.Tag"))
        return found


def _pairs(params: dict[str, str], prefix: str) -> dict[str, str]:
    found = {}
    for n in range(1, 100):
        key = params.get(f"{prefix}.{n}.Key")
        if key is None:
            break
        found[key] = params.get(f"{prefix}.{n}.Value", "")
    return found


def _body(entry: dict[str, Any]) -> bytes:
    body = entry.get("body") or ""
    return base64.b64decode(body) if entry.get("body_encoded") else body.encode()


class BodyLost(AssertionError):
    """The recording holds a request without the body its client sent: a call that cannot
    be judged, named as such rather than judged as a call without parameters.

    urllib3 sends a request's headers and its body in two writes; a client that exits
    between them leaves moto the headers and then the end of the stream, which moto's
    recorder keeps as a request with an empty body.  Seen twice, from a stopping daemon
    whose lease backstop it abandoned mid-call (docs/testing.md, "A flake, explained")."""


def parse(entry: dict[str, Any]) -> Call | None:
    """The call of one recorded request; None for what no AWS client sent (unsigned)."""
    headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
    match = CREDENTIAL.search(headers.get("authorization", ""))
    if not match:
        return None
    key, region, service = match.group("key"), match.group("region"), match.group("service")
    body = _body(entry)
    sent = int(headers.get("content-length") or 0)
    if sent and not body:  # a client gone between headers and body (see BodyLost)
        shown_headers = sorted(name for name in headers if name != "authorization")
        raise BodyLost(f"moto's recording lost the {sent}-byte body of a request to {service} "
                       f"({headers.get('x-amz-target') or entry.get('method')} "
                       f"{entry.get('url', '')[:80]}) by {key}: the recording cannot be judged "
                       f"(its headers: {shown_headers}"
                       f"; body field: {entry.get('body')!r:.40}, encoded: "
                       f"{entry.get('body_encoded')!r})")
    if service in QUERY_SERVICES:
        params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        return Call(key, service, region, params.pop("Action", "?"), params)
    if "x-amz-target" in headers:
        operation = headers["x-amz-target"].rsplit(".", 1)[-1]
        return Call(key, service, region, operation, json.loads(body or b"{}"))
    return _rest(key, service, region, entry["method"], entry["url"], headers, body)


def _rest(key: str, service: str, region: str, method: str, url: str,
          headers: dict[str, str], body: bytes) -> Call:
    parsed = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parsed.path)
    query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    params: dict[str, Any] = {"path": path, "query": query, "headers": headers}
    if service == "lambda":
        params["body"] = json.loads(body) if body.strip() else {}
        match = re.match(r"^/[\d-]+/functions/(?P<name>[^/]+)(?P<rest>/.*)?$", path)
        name, rest = (match.group("name"), match.group("rest") or "") if match else ("", path)
        params["FunctionName"] = name
        operation = {("GET", ""): "GetFunction", ("PUT", "/code"): "UpdateFunctionCode",
                     ("POST", "/invocations"): "Invoke", ("GET", "/policy"): "GetPolicy",
                     }.get((method, rest), f"{method} {rest}")
        return Call(key, service, region, operation, params)
    if service != "s3":
        return Call(key, service, region, f"{method} {path}", params)
    host = headers.get("host", "").split(":")[0]
    if re.match(r"^[\d.]+$|^localhost$", host):  # path style
        bucket, _, object_key = path.lstrip("/").partition("/")
    else:
        bucket, object_key = host.split(".", 1)[0], path.lstrip("/")
    params.update(Bucket=bucket, Key=object_key)
    return Call(key, service, region, _s3_operation(method, object_key, query, headers), params)


def _s3_operation(method: str, key: str, query: dict[str, str], headers: dict[str, str]) -> str:
    if not key:
        if method == "GET" and query.get("list-type") == "2":
            return "ListObjectsV2"
        if method == "GET" and not query:
            return "ListObjects"
        if method == "PUT" and not query:
            return "CreateBucket"
        if method == "GET" and set(query) == {"location"}:
            return "GetBucketLocation"
        return f"{method} bucket?{'&'.join(sorted(query))}"
    if method == "PUT" and "x-amz-copy-source" in headers:
        return "CopyObject"
    if query:
        return f"{method} object?{'&'.join(sorted(query))}"
    return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject",
            "DELETE": "DeleteObject"}[method]
