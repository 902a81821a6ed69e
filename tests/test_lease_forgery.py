"""Issue 23, finding 2: the lease function acts only on its own lease.

Anyone allowed to put a rule and a target can aim a rule at the lease function with another
user's AnnexID and ClientToken (both visible to Describe*) and ``"LeaseExpiration": 1``.  On
main the function believed the event and ended that annex.  Now it ends an annex only when the
annex's own rule (named after it, described as its request's lease, its target aimed at this
function) stores a lease of the same request that has ended; anything else ends nothing and
is logged with what differed.
"""
from __future__ import annotations

import json
import logging

import pytest

from annexd_lambda import lease
from localaws import fixtures
from localaws.eventbridge import EventBridgePlayer, LambdaContext, lambda_environment
from localaws.pool import REGION

from conftest import SPOT_CONFIG
from test_lease import (EXPIRY, CallCounter, clients, counters_closed,  # noqa: F401
                        event, make_annex, make_request)

FORGED_RULE = "mallory-was-here"


def create(run_annex, with_keys, aws, name: str, *flags: str) -> None:
    made = run_annex("-annex-name", name, "-count", "2", "-lease-function-arn", aws.lease_arn,
                     *with_keys, *(flags or ("-lease-duration", "3600")), SPOT_CONFIG)
    assert made.returncode == 0, made.stderr


def forge(aws, lease_input: dict) -> None:
    """Mallory's own rule, aimed at the lease function, carrying ``lease_input``."""
    aws.events.put_rule(Name=FORGED_RULE, ScheduleExpression="rate(1 minute)")
    aws.events.put_targets(Rule=FORGED_RULE, Targets=[
        {"Id": "forged", "Arn": aws.lease_arn, "Input": json.dumps(lease_input)}])


def tick(aws) -> dict[str, object]:
    """One round of EventBridge, as the local player delivers it: every rule's Input to the
    function its target names, with Lambda's context (the target's ARN)."""
    player = EventBridgePlayer(aws.events, aws.lambda_, lease.handler)
    with lambda_environment(aws.url, REGION):
        return dict(player.tick())


def intact(aws, name: str) -> bool:
    held = aws.annex_resources(name)
    return (len(held["fleets"]) == 1 and len(held["instances"]) == 2 and
            held["rules"] == [name] and held["targets"] == [name] and len(held["objects"]) == 1)


def warnings(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records
                     if r.name == "annex.lease" and r.levelno == logging.WARNING)


@pytest.mark.parametrize("forgery", ["the victim's request", "no request (by name)"])
def test_a_forged_event_ends_nothing_and_is_logged(aws, run_annex, with_keys, caplog, forgery):
    """The attack of finding 2: a second rule aimed at the function with the victim's
    AnnexID and ClientToken (or with no ClientToken, which on main ended everything of that
    name) and ``"LeaseExpiration": 1``."""
    name = "victim-sf" if forgery == "the victim's request" else "victim-byname"
    create(run_annex, with_keys, aws, name)
    victim = aws.target_input(name)
    forged = {**victim, "LeaseExpiration": 1}
    if forgery == "no request (by name)":
        del forged["ClientToken"]
    forge(aws, forged)
    caplog.set_level(logging.INFO, logger="annex.lease")
    results = tick(aws)
    assert results[name] == {"AnnexID": name, "expired": False}  # its own tick: not yet
    refused = results[FORGED_RULE]
    assert refused["expired"] is False and refused["refused"], refused
    assert intact(aws, name)
    assert all(state == "running" for state in instance_states(aws, name))
    logged = warnings(caplog)
    assert f"annex {name}: an event says its lease (request {forged.get('ClientToken')}) " \
           "ended at 1" in logged
    assert "a forged or stale event; ending nothing" in logged
    if forgery == "the victim's request":
        assert f"rule {name}'s lease ends at {victim['LeaseExpiration']}" in logged
    else:
        assert f"rule {name} holds the lease of request {victim['ClientToken']}, the event " \
               "names request None" in logged


def instance_states(aws, name: str) -> list[str]:
    reply = aws.ec2.describe_instances(InstanceIds=lease.find_instances(aws.ec2, name))
    return [i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]]


def test_a_stale_event_after_a_lease_extension_ends_nothing(aws, run_annex, with_keys,
                                                            fire_lease, caplog):
    """A tick carrying the end the lease had before -lease-duration moved it (the stored
    Input has the new end) ends nothing; the lease's own new end does."""
    create(run_annex, with_keys, aws, "stretch", "-lease-duration", "60")
    old = aws.target_input("stretch")
    extended = run_annex("-annex-name", "stretch", "-lease-duration", "7200", *with_keys)
    assert extended.returncode == 0, extended.stderr
    new = aws.target_input("stretch")
    assert new["LeaseExpiration"] > old["LeaseExpiration"] + 3600
    assert {k: v for k, v in new.items() if k != "LeaseExpiration"} == \
        {k: v for k, v in old.items() if k != "LeaseExpiration"}
    caplog.set_level(logging.INFO, logger="annex.lease")
    stale = fire_lease(old, now=old["LeaseExpiration"] + 1)
    assert stale["expired"] is False
    assert stale["refused"].startswith(f"rule stretch's lease ends at {new['LeaseExpiration']}")
    assert intact(aws, "stretch")
    assert f"(the event said {old['LeaseExpiration']})" in warnings(caplog)
    ended = fire_lease(new, now=new["LeaseExpiration"] + 1)
    assert ended["expired"] and ended["deleted_rule"] and len(ended["cancelled_fleets"]) == 1
    assert not any(aws.annex_resources("stretch").values())


def test_an_annex_of_an_earlier_release_is_still_ended_by_its_own_rule(aws):
    """An Input without ClientToken and the rule described in the old words: its own expired
    lease ends it (by name, as then); a forged expiry of it ends nothing."""
    make_annex(aws, "legacy")
    function = LambdaContext(aws.lease_arn)
    forged = {**event("legacy"), "LeaseExpiration": 1}
    refused = lease.handler(forged, function, now=lambda: EXPIRY - 60, clients=clients(aws))
    assert refused["expired"] is False and "60 s from now" in refused["refused"]
    assert len(aws.annex_resources("legacy")["instances"]) == 2
    ended = lease.handler(event("legacy"), function, now=lambda: EXPIRY + 1,
                          clients=clients(aws))
    assert ended["expired"] and ended["deleted_rule"] and ended["deleted_config"]
    assert not any(aws.annex_resources("legacy").values())


def test_a_rule_put_back_by_a_lease_change_confirms_an_earlier_releases_lease(aws):
    """A lease change of this release puts a lost rule back described with the request's
    ClientToken, while the Input (an earlier release's plan) still has none."""
    make_annex(aws, "putback")
    aws.events.put_rule(Name="putback", ScheduleExpression="rate(1 minute)",
                        Description=lease.rule_description("putback", "putback_0f9e"))
    ended = lease.handler(event("putback"), LambdaContext(aws.lease_arn),
                          now=lambda: EXPIRY + 1, clients=clients(aws))
    assert ended["expired"] and ended["deleted_rule"]
    assert not any(aws.annex_resources("putback").values())


def test_a_rule_deleted_by_hand_ends_nothing_the_backstop_is_for_that(aws, caplog):
    """An event whose rule is gone cannot be confirmed: nothing is ended by the function
    (condor_annexd's lease backstop ends such an annex)."""
    token = "byhand_0f9e"
    make_request(aws, "byhand", token)
    own = {**event("byhand"), "ClientToken": token}
    aws.events.remove_targets(Rule="byhand", Ids=["byhand"])
    aws.events.delete_rule(Name="byhand")
    caplog.set_level(logging.INFO, logger="annex.lease")
    result = lease.handler(own, LambdaContext(aws.lease_arn), now=lambda: EXPIRY + 1,
                           clients=clients(aws))
    assert result == {"AnnexID": "byhand", "expired": False,
                      "refused": "there is no rule byhand (ended already, or deleted by hand)"}
    assert len(aws.annex_resources("byhand")["instances"]) == 1
    assert "there is no rule byhand" in warnings(caplog)


def test_only_the_function_the_annexs_rule_targets_ends_it(aws):
    """The annex's target names one lease function; the same event delivered to another
    function (another stack's, another version of the code) is not that one's to act on.  A
    version or alias of the same function is the same function."""
    token = "aimed_0f9e"
    make_request(aws, "aimed", token)
    own = {**event("aimed"), "ClientToken": token}
    other = fixtures.deploy_lease_function(aws.iam, aws.lambda_, name="SomeoneElsesFunction")
    refused = lease.handler(own, LambdaContext(other), now=lambda: EXPIRY + 1,
                            clients=clients(aws))
    assert refused["refused"].startswith(f"rule aimed has no target aimed aimed at {other}")
    assert len(aws.annex_resources("aimed")["instances"]) == 1
    ended = lease.handler(own, LambdaContext(f"{aws.lease_arn}:live"), now=lambda: EXPIRY + 1,
                          clients=clients(aws))
    assert ended["expired"] and ended["deleted_rule"]


def test_a_forged_expired_event_costs_two_reads_and_an_unexpired_one_none(aws):
    """Deterministic costs: confirming is DescribeRule + ListTargetsByRule; an event that
    says the lease still runs makes no AWS call at all."""
    token = "cost_0f9e"
    make_request(aws, "cost", token)
    own = {**event("cost"), "ClientToken": token}
    counter = CallCounter(aws.ec2, aws.events, aws.s3)
    function = LambdaContext(aws.lease_arn)
    lease.handler(own, function, now=lambda: EXPIRY, clients=clients(aws))
    assert counter.calls == []
    lease.handler({**own, "LeaseExpiration": 1}, function, now=lambda: EXPIRY - 1,
                  clients=clients(aws))
    assert counter.calls == ["DescribeRule", "ListTargetsByRule"]


@pytest.mark.parametrize("arn, function", [
    ("arn:aws:lambda:us-east-1:123456789012:function:f", "arn:aws:lambda:us-east-1:"
     "123456789012:function:f"),
    ("arn:aws:lambda:us-east-1:123456789012:function:f:live", "arn:aws:lambda:us-east-1:"
     "123456789012:function:f"),
    ("arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST", "arn:aws:lambda:us-east-1:"
     "123456789012:function:f"),
    ("not an arn", "not an arn"),
])
def test_a_functions_versions_and_aliases_are_the_function(arn, function):
    assert lease.function_of(arn) == function
