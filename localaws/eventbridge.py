"""Play EventBridge's part for moto, which accepts schedules but never fires them.

On each tick, every enabled ``rate(...)`` rule whose target is a Lambda function that exists
gets that function's local handler called with the target's constant ``Input`` -- exactly the
event the real service would deliver -- and a context naming the function as Lambda's does
(``invoked_function_arn``: the target's ARN), which the lease function checks its own rule's
target against.  The rate itself is not honoured: ticks come as often as
the caller asks, so a demo need not wait five minutes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

log = logging.getLogger("localaws.eventbridge")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class LambdaContext:
    """What the lease function reads of the context AWS Lambda passes a handler."""

    invoked_function_arn: str


@contextlib.contextmanager
def lambda_environment(endpoint_url: str, region: str) -> Iterator[None]:
    """Environment a Lambda handler would see, pointed at the emulator instead of AWS."""
    wanted = {"AWS_ENDPOINT_URL": endpoint_url, "AWS_DEFAULT_REGION": region,
              "AWS_REGION": region, "AWS_ACCESS_KEY_ID": "testing",
              "AWS_SECRET_ACCESS_KEY": "testing"}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class EventBridgePlayer:
    def __init__(self, events: Any, lambda_: Any, handler: Handler):
        self._events, self._lambda, self._handler = events, lambda_, handler

    def _function_exists(self, arn: str) -> bool:
        try:
            self._lambda.get_function(FunctionName=arn)
        except self._lambda.exceptions.ResourceNotFoundException:
            return False
        return True

    def _scheduled_targets(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for page in self._events.get_paginator("list_rules").paginate():
            for rule in page.get("Rules", []):
                if rule.get("State") != "ENABLED":
                    continue
                if not rule.get("ScheduleExpression", "").startswith("rate("):
                    continue
                pages = self._events.get_paginator("list_targets_by_rule").paginate(
                    Rule=rule["Name"])
                for target_page in pages:
                    for target in target_page.get("Targets", []):
                        yield rule["Name"], target

    def tick(self) -> list[tuple[str, Any]]:
        """Deliver one round of scheduled events; returns (rule, handler result or error)."""
        results: list[tuple[str, Any]] = []
        for rule, target in list(self._scheduled_targets()):
            if ":lambda:" not in target["Arn"] or not self._function_exists(target["Arn"]):
                continue
            try:
                result = self._handler(json.loads(target.get("Input", "{}")),
                                       LambdaContext(target["Arn"]))
            except Exception as error:  # a failing invocation is the function's problem
                log.warning("lease function failed for rule %s: %s", rule, error)
                result = error
            results.append((rule, result))
        return results

    def run(self, period: float, stop: threading.Event,
            on_result: Callable[[str, Any], None] | None = None) -> None:
        """Tick every ``period`` seconds until ``stop`` is set."""
        while not stop.wait(period):
            try:
                for rule, result in self.tick():
                    if on_result:
                        on_result(rule, result)
            except Exception as error:
                log.warning("EventBridge player tick failed: %s", error)
