"""localaws.recorder reads moto's recording as the calls that were made, and says so when the
recording lost a call's body instead of judging a call without parameters."""
import base64
import json

import pytest

from localaws.recorder import BodyLost, parse

AUTHORIZATION = ("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261207/us-east-1/events/aws4_request, "
                 "SignedHeaders=host, Signature=0")


def entry(body: bytes, length: int) -> dict:
    return {"method": "POST", "url": "http://127.0.0.1/", "body_encoded": True,
            "body": base64.b64encode(body).decode(),
            "headers": {"Authorization": AUTHORIZATION, "Content-Length": str(length),
                        "X-Amz-Target": "AWSEvents.DescribeRule"}}


def test_a_recorded_call_has_the_parameters_its_client_sent():
    body = json.dumps({"Name": "phoenix"}).encode()
    call = parse(entry(body, len(body)))
    assert (call.key_id, call.service, call.operation, call.params) == \
        ("AKIAEXAMPLE", "events", "DescribeRule", {"Name": "phoenix"})


def test_a_body_the_recording_lost_is_named_not_judged_as_empty():
    """Seen twice (docs/testing.md, "A flake, explained"): a daemon that quit between a
    request's headers and its body left moto a DescribeRule recorded with no body, which the
    IAM mapping then met as a call without Name (KeyError)."""
    with pytest.raises(BodyLost, match=r"lost the 19-byte body of a request to events "
                                       r"\(AWSEvents.DescribeRule"):
        parse(entry(b"", 19))
