"""The wire protocol's schemas accept what the CLI sends and refuse the rest, by field."""
import pytest

from annexd.rpc import protocol


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


# -- the CLI's compiled reply check agrees with jsonschema ------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(
    ["", "x", "aws", "busy", "internal", "no-such-kind"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["kind", "message", "x"]),
                                                 inner, max_size=3)), max_leaves=6)
_REPLIES = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from([protocol.VERSION, protocol.VERSION + 1, "1"]),
    "ok": st.one_of(st.booleans(), st.sampled_from([0, "true"])),
    "result": st.one_of(st.dictionaries(st.text(max_size=3), _SCALARS, max_size=2), _SCALARS),
    "notices": st.one_of(st.lists(st.one_of(st.text(max_size=3), _SCALARS), max_size=3),
                         _SCALARS),
    "error": st.one_of(st.fixed_dictionaries({}, optional={
        "kind": st.sampled_from(list(protocol.ERROR_KINDS) + ["bogus", 1]),
        "message": st.one_of(st.text(max_size=5), _SCALARS),
        "aws_code": st.one_of(st.none(), st.text(max_size=3), st.integers()),
        "request_id": st.one_of(st.none(), st.text(max_size=3), st.booleans())}), _VALUES),
    "progress": st.one_of(st.text(max_size=5), _SCALARS),
})

_TEXT = st.text(max_size=5)
#: Replies the daemon sends, and the same with one member replaced by anything.
_SENT = st.one_of(
    st.builds(protocol.ok_reply, st.dictionaries(_TEXT, _VALUES, max_size=2),
              st.lists(_TEXT, max_size=2)),
    st.builds(protocol.error_reply, st.sampled_from(protocol.ERROR_KINDS), _TEXT,
              aws_code=st.one_of(st.none(), _TEXT), request_id=st.one_of(st.none(), _TEXT)),
    st.builds(lambda text: {"version": protocol.VERSION, "progress": text}, _TEXT))
_MUTATED = st.builds(lambda reply, key, value: {**reply, key: value}, _SENT,
                     st.sampled_from(["version", "ok", "result", "notices", "error", "progress"]),
                     _VALUES)
_ANY_REPLY = st.one_of(_REPLIES, _SENT, _MUTATED)


def _verdict(check, message) -> bool:
    try:
        check(message)
    except protocol.ProtocolError:
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(_ANY_REPLY)
def test_the_clis_compiled_check_and_jsonschema_agree_on_every_reply(message):
    assert _verdict(protocol.check_reply, message) == \
        _verdict(protocol.validate_reply, message), message
    assert _verdict(lambda m: protocol.check_reply(m, "progress"), message) == \
        _verdict(lambda m: protocol.validate(m, protocol.PROGRESS_SCHEMA), message), message


def test_the_clis_compiled_check_names_what_is_wrong():
    assert protocol.check_reply(protocol.ok_reply({"x": 1})) == protocol.ok_reply({"x": 1})
    with pytest.raises(protocol.ProtocolError, match="version"):
        protocol.check_reply({"version": 99, "ok": True})
