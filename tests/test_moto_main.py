"""localaws.moto_main: what the emulator lists once answers as moto's own listings do."""
from __future__ import annotations

import json
import subprocess
import sys

COMPARE = """
import json
from moto import backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from localaws import moto_main
hosts = ["ec2", "s3", "events", "sts", "moto_api", "ec2.us-east-1.amazonaws.com", "nothing"]
before = list(backends.list_of_moto_modules())
dispatch = DomainDispatcherApplication(create_backend_app)
routed_before = [dispatch.get_backend_for_host(host) for host in hosts]
moto_main.listed_once()
from moto.core import responses
from moto.ec2.responses import EC2Response
from moto.events.responses import EventsHandler
print(json.dumps([before, list(backends.list_of_moto_modules()),
                  list(backends.list_of_moto_modules()), routed_before,
                  [dispatch.get_backend_for_host(host) for host in hosts],
                  [sorted(responses.method_names_from_class(EC2Response)),
                   sorted(responses.method_names_from_class(EventsHandler))]]))
"""

OWN_NAMES = """
import json
from moto.core.utils import method_names_from_class
from moto.ec2.responses import EC2Response
from moto.events.responses import EventsHandler
print(json.dumps([sorted(method_names_from_class(EC2Response)),
                  sorted(method_names_from_class(EventsHandler))]))
"""


def test_the_listing_taken_once_is_motos_own_and_routes_the_same():
    before, after, again, routed_before, routed_after, names = json.loads(subprocess.run(
        [sys.executable, "-c", COMPARE], check=True, capture_output=True, text=True).stdout)
    assert before == after == again
    assert {"ec2", "events", "s3", "awslambda", "iam", "sts"} <= set(before)
    assert routed_before == routed_after
    assert routed_after[:4] == ["ec2", "s3", "events", "sts"] and routed_after[-1] is None
    # Each response class's methods, listed once, are moto's own listing of them.
    own = json.loads(subprocess.run([sys.executable, "-c", OWN_NAMES], check=True,
                                    capture_output=True, text=True).stdout)
    assert names == own and "describe_instances" in names[0] and "put_rule" in names[1]


QUIET = """
import io, logging, sys
from werkzeug import serving
from localaws import moto_main
stream = io.StringIO()
logging.getLogger("werkzeug").addHandler(logging.StreamHandler(stream))
logging.getLogger("werkzeug").setLevel(logging.INFO)
class Handler(serving.WSGIRequestHandler):
    def __init__(self):  # no socket: only what log_request and log_error read
        self.path, self.command, self.request_version = "/", "POST", "HTTP/1.1"
        self.requestline, self.client_address = "POST / HTTP/1.1", ("127.0.0.1", 1)
Handler().log_request(200)
before = stream.getvalue()
moto_main.without_access_log()
Handler().log_request(200)
Handler().log_error("%s", "the error line")
print(repr(before)); print(repr(stream.getvalue()[len(before):]))
"""


def test_requests_are_not_logged_but_errors_are():
    before, after = subprocess.run([sys.executable, "-c", QUIET], check=True,
                                   capture_output=True, text=True).stdout.splitlines()
    assert "POST / HTTP/1.1" in before and '200' in before
    assert "POST /" not in after and "the error line" in after


def test_every_image_of_motos_that_the_project_names_is_kept():
    """localaws.moto_server keeps only the base images the project launches: any image of
    moto's list named in the examples, tests, docs or kit is one of them."""
    import os
    import re
    from localaws.moto_server import IMAGES, motos_base_images
    motos = {image["ami_id"] for image in motos_base_images()}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    named = set()
    for folder in ("examples", "tests", "localaws", "bench", "docs", "annexd", "condor_annex"):
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if name.endswith((".py", ".json", ".md", ".txt", ".yaml")):
                    with open(os.path.join(directory, name), encoding="utf-8") as handle:
                        named |= set(re.findall(r"ami-[0-9a-f]{8,17}", handle.read()))
    with open(os.path.join(root, "README.md"), encoding="utf-8") as handle:
        named |= set(re.findall(r"ami-[0-9a-f]{8,17}", handle.read()))
    assert "ami-1e749f67" in named
    assert named & motos == set(IMAGES)


def _answer(sock, head: bytes) -> tuple[bytes, bytes]:
    """Read one HTTP answer from ``sock`` (its head and body, by Content-Length), after
    ``head`` bytes already read; returns (this answer's head, what follows it)."""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, head
        head += chunk
    answer, _, rest = head.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in answer.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, answer
        rest += chunk
    return answer, rest[length:]


LIST_RULES = (b"POST / HTTP/1.1\r\nHost: events.us-east-1.amazonaws.com\r\n"
              b"X-Amz-Target: AWSEvents.ListRules\r\nContent-Type: application/x-amz-json-1.1\r\n"
              b"Authorization: AWS4-HMAC-SHA256 Credential=testing/20261208/us-east-1/events/"
              b"aws4_request, SignedHeaders=host, Signature=0\r\n"
              b"Content-Length: 2\r\n\r\n{}")


def test_a_connection_carries_the_next_request_even_one_sent_at_once(moto_server):
    """The emulator keeps a connection open after an answer whose request it read to the
    end, as AWS does; two requests sent together (the second within werkzeug's 10 ms of
    discarding) are both answered, in order, on the one connection."""
    import socket
    with socket.create_connection(("127.0.0.1", moto_server.port), timeout=10) as sock:
        sock.sendall(LIST_RULES + LIST_RULES)
        first, rest = _answer(sock, b"")
        second, rest = _answer(sock, rest)
        sock.sendall(LIST_RULES)
        third, _ = _answer(sock, rest)
    for head in (first, second, third):
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"connection: close" not in head.lower(), head


def test_a_request_whose_body_was_not_read_closes_its_connection(moto_server):
    """Where the emulator left a body unread it cannot tell where the next request starts:
    that answer says ``Connection: close``, as werkzeug's every answer did (a route moto
    does not have: answered without reading the body), and the next request goes on a new
    connection."""
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", moto_server.port, timeout=10)
    try:
        connection.request("GET", "/moto-api/no-such-route", body=b"x" * 1000)
        response = connection.getresponse()
        response.read()
        assert (response.status, response.getheader("Connection")) == (404, "close")
        connection.request("GET", "/moto-api/no-such-route")
        again = connection.getresponse()
        again.read()
        assert (again.status, again.getheader("Connection")) == (404, None)
    finally:
        connection.close()


def test_a_malformed_request_after_a_good_one_closes_the_connection(moto_server):
    """An answer http.server gives itself (here 431: a header line too long) closes the
    connection, whatever the request before it on that connection was."""
    import socket
    with socket.create_connection(("127.0.0.1", moto_server.port), timeout=10) as sock:
        sock.sendall(LIST_RULES)
        first, rest = _answer(sock, b"")
        sock.sendall(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")
        refused, _ = _answer(sock, rest)
    assert b"connection: close" not in first.lower(), first
    assert refused.startswith(b"HTTP/1.1 431") and b"connection: close" in refused.lower(), \
        refused
