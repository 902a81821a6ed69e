"""The wire protocol's schemas accept what the CLI sends and refuse the rest, by field."""
import pytest

from annexd import protocol


def create(**annex):
    body = {"lease_duration": 60, "fleet_config": {}}
    body.update(annex)
    return {"version": 1, "command": "create", "annex": body}


def test_valid_requests_pass():
    protocol.validate_request({"version": 1, "command": "ping"})
    protocol.validate_request(create(name="a-1", count=2, lease_function_arn="arn"))


@pytest.mark.parametrize("message, where", [
    ({"version": 2, "command": "ping"}, "version"),
    ({"version": 1, "command": "explode"}, "command"),
    ([1, 2], "message"),
    (create(name="bad_name"), "annex/name"),
    (create(name="x" * 28), "annex/name"),
    (create(lease_duration=0), "annex/lease_duration"),
    (create(lease_duration="60"), "annex/lease_duration"),
    (create(count=0), "annex/count"),
    (create(surprise=True), "annex"),
    ({**create(), "credentials": {"access_key_id": "a"}}, "credentials"),
])
def test_invalid_requests_name_the_field(message, where):
    with pytest.raises(protocol.ProtocolError, match=f"^{where}: "):
        protocol.validate_request(message)


def test_replies_round_trip_their_schema():
    protocol.validate_reply(protocol.ok_reply({"x": 1}, ["note"]))
    protocol.validate_reply(protocol.error_reply("aws", "boom", aws_code="X", request_id="r"))
    with pytest.raises(protocol.ProtocolError):
        protocol.validate_reply({"version": 1, "ok": False, "error": {"kind": "nope",
                                                                     "message": "m"}})


def test_encode_is_one_line():
    assert protocol.encode({"a": "b\nc"}).count(b"\n") == 1
