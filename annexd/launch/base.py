"""The one launch interface: what every kind of annex (Spot Fleet, EC2 Fleet, on-demand) must
say about itself, and the checks they share.

A *kind* turns the user's launch input into the exact AWS request (``build``), launches it,
finds what an earlier attempt launched (by the annex's ClientToken), ends it (terminating its
instances), counts its instances, and answers the cost questions: its capacity, how much of
it is Spot, the options it may launch (for the worst-case price) and how to make AWS itself
enforce an hourly price cap.  A kind also says which tag its instances carry, so that -status
counts every annex of a region with one tag-filtered DescribeInstances per tag key.  Everything else (lease, config, journal, rollback) is the same
for every kind and lives outside this package.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG, OWNER_TAG
from botocore.validate import ParamValidator

from annexd.aws.session import service_model
from annexd.rpc.protocol import MAX_CAPACITY, shown

if TYPE_CHECKING:
    from annexd.aws import AnnexAws
    from annexd.launch.plan import AnnexPlan

Outputs = dict[str, Any]
log = logging.getLogger("annexd.launch")

#: The validity window is dropped: the annex lease, not the fleet's, decides when it ends (and
#: a stale console date would otherwise fail the request).
DROPPED_FIELDS = ("ValidFrom", "ValidUntil")
PRICE = re.compile(r"[0-9]{1,6}(\.[0-9]{1,8})?")
#: An auto annex's instances (and fleets) also carry the order that started them (its
#: ClientToken), so a daemon that crashed after the call finds what the order launched before
#: sending it again.
ORDER_TAG = "htcondor:AnnexOrder"


def identity_tags(annex_id: str, client_token: str, owner: str = "") -> dict[str, str]:
    """The tags that say whose request made a resource: the annex, the request, and the AWS
    principal that made it (the user policy's owner tag: set at create, never changed)."""
    tags = {ANNEX_TAG: annex_id, CLIENT_TOKEN_TAG: client_token}
    if owner:
        tags[OWNER_TAG] = owner
    return tags


class LaunchConfigError(ValueError):
    """The launch input cannot be used; the message names the field."""


@dataclass(frozen=True)
class Option:
    """One thing a launch may start: its instance type (None: chosen by attributes or by the
    launch template, so unknown here), the most the user will pay per hour (None: the
    on-demand price) and how many capacity units one instance counts for."""

    instance_type: str | None
    max_price: float | None = None
    weight: float = 1.0


@dataclass
class Built:
    """The AWS request to send, and what the user should be told about it."""

    request: dict[str, Any]
    notices: list[str] = field(default_factory=list)


class Kind:
    """One kind of annex.  Subclasses fill in every method; see the module docstring."""

    annex_type: str = ""
    #: What the user's launch input is called in errors.
    label: str = ""
    #: The create step's name in the journal (kept stable across versions).
    step_name: str = "fleet"
    #: Whether AWS can enforce an hourly price cap on this kind (fleets can).
    can_cap_price: bool = False

    def build(self, source: Any, *, annex_id: str, client_token: str, count: int | None,
              instance_tags: dict[str, str], owner: str = "") -> Built:
        raise NotImplementedError

    # -- the create step -----------------------------------------------------------------
    def launch(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> Outputs:
        raise NotImplementedError

    def find(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> Outputs | None:
        raise NotImplementedError

    def end(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> None:
        raise NotImplementedError

    # -- operating -----------------------------------------------------------------------
    def instance_tag(self, plan: "AnnexPlan", outputs: Outputs) -> tuple[str, str] | None:
        """The tag (key, value) every instance of the annex carries: ours, or -- where AWS
        does not let us tag them -- the one AWS puts on every instance of a fleet.  None:
        nothing launched yet."""
        return ANNEX_TAG, plan.annex_id

    def reply(self, plan: "AnnexPlan", outputs: Outputs) -> tuple[dict[str, Any], list[str]]:
        """What the user is given back (the printed ID first), and notices."""
        raise NotImplementedError

    # -- cost ----------------------------------------------------------------------------
    def capacity(self, request: dict[str, Any]) -> int:
        raise NotImplementedError

    def spot_capacity(self, request: dict[str, Any]) -> int:
        return 0

    def options(self, request: dict[str, Any]) -> list[Option]:
        raise NotImplementedError

    def cap_price(self, request: dict[str, Any], hourly: float) -> tuple[dict[str, Any], str]:
        """The request with AWS-enforced hourly caps totalling at most ``hourly``."""
        raise NotImplementedError(f"{self.annex_type} annexes cannot carry a price cap")

    def hourly_cap(self, request: dict[str, Any]) -> float | None:
        """The most AWS lets the whole annex cost per hour (its fleet's own caps), or None
        when some part of it has no such cap.  A lease change is held to ANNEX_MAX_COST by
        it when the price table cannot price the annex."""
        return None


@functools.lru_cache(maxsize=None)
def _input_shape(operation: str) -> Any:
    return service_model("ec2").operation_model(operation).input_shape


def validate(operation: str, params: dict[str, Any]) -> None:
    """Check ``params`` against botocore's own model of ``operation``, so errors read like
    AWS's (names, types, required members)."""
    report = ParamValidator().validate(params, _input_shape(operation))
    if report.has_errors():
        lines = [line.strip() for line in report.generate_report().splitlines()]
        raise LaunchConfigError(shown("; ".join(line for line in lines if line), 400))


def drop_validity_window(config: dict[str, Any]) -> list[str]:
    return [f"dropped {name} (the annex lease decides when the fleet ends)"
            for name in DROPPED_FIELDS if config.pop(name, None) is not None]


def take_client_token(config: dict[str, Any], client_token: str) -> list[str]:
    notices = ["replaced ClientToken with the annex's own"] if "ClientToken" in config else []
    config["ClientToken"] = client_token
    return notices


def check_price(where: str, price: Any) -> None:
    if price is not None and not (isinstance(price, str) and PRICE.fullmatch(price)
                                  and float(price) > 0):
        raise LaunchConfigError(f"{where}: expected a price in USD such as 0.05, got "
                                f"{shown(price)!r}")


def check_weight(where: str, weight: Any) -> None:
    if weight is not None and not (math.isfinite(weight) and 0 < weight <= MAX_CAPACITY):
        raise LaunchConfigError(f"{where}: expected a number above 0, got {shown(weight)}")


def check_capacity(where: str, capacity: int) -> None:
    if not 1 <= capacity <= MAX_CAPACITY:
        raise LaunchConfigError(f"{where}: expected a whole number from 1 to {MAX_CAPACITY}, "
                                f"got {shown(capacity)}")


def tag_resource(tag_specs: list[dict[str, Any]], resource_type: str, wanted: dict[str, str],
                 where: str, overrides: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Return ``tag_specs`` with the ``wanted`` tags on ``resource_type``.

    ``overrides`` (the command line's -tag) replace the file's tags of the same name; a
    ``wanted`` tag (the annex's identity) may not be contradicted by anyone.
    """
    specs = copy.deepcopy(tag_specs)
    overrides = overrides or {}
    matching = [spec for spec in specs if spec.get("ResourceType") == resource_type]
    if not matching:
        matching = [{"ResourceType": resource_type, "Tags": []}]
        specs.append(matching[0])
    for spec in matching:
        spec["Tags"] = [t for t in spec.get("Tags", []) if t.get("Key") not in overrides] + \
            [{"Key": key, "Value": value} for key, value in overrides.items()]
        tags = spec["Tags"]
        for tag in tags:
            if tag.get("Key") in wanted and tag.get("Value") != wanted[tag.get("Key")]:
                raise LaunchConfigError(
                    f"{where}: tag {tag.get('Key')}={tag.get('Value')!r} conflicts with the "
                    f"annex's {wanted[tag.get('Key')]!r}; remove it, condor_annexd sets it")
        present = {tag.get("Key") for tag in tags}
        tags += [{"Key": key, "Value": value} for key, value in wanted.items()
                 if key not in present]
    return specs


def template_overrides(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, override) of every launch template override; a template given without
    overrides counts as one empty override (launch exactly what the template says)."""
    found = []
    for index, template in enumerate(config.get("LaunchTemplateConfigs", [])):
        overrides = template.get("Overrides") or [{}]
        found += [(f"LaunchTemplateConfigs[{index}].Overrides[{number}]", override)
                  for number, override in enumerate(overrides)]
    return found


def keep_one(plan: "AnnexPlan", found: list[str],
             end: Callable[[list[str]], None]) -> str | None:
    """The one fleet of a request, from those carrying its ClientToken.  More than one can
    only come from a service that did not honour the token (moto): keep the first, end the
    others (terminating their instances), and say so loudly."""
    if len(found) > 1:
        log.error("annex %s: %d fleets carry one ClientToken; keeping %s, ending the rest",
                  plan.annex_id, len(found), found[0])
        end(found[1:])
    return found[0] if found else None


def allocation_notice(strategy: str | None, default: str, recommended: str) -> list[str]:
    """AWS calls its default Spot allocation strategy "not recommended": say so, change
    nothing (the user may have reasons, and a silent change would surprise them)."""
    if strategy not in (None, default):
        return []
    what = f"AllocationStrategy {default}" if strategy else \
        f"no AllocationStrategy (AWS then uses {default})"
    return [f"{what}: AWS recommends {recommended} (fewer interruptions at a low price); "
            "set it in the config to use it"]


def price_text(value: float) -> str:
    """An hourly price as AWS takes it (a decimal string), rounded down to a tenth of a cent
    hundredth so that the cap is never exceeded by rounding."""
    return f"{math.floor(value * 10000) / 10000:.4f}"


def split_cap(hourly: float, spot: int, total: int) -> tuple[float, float]:
    """Share an hourly cap between the Spot and on-demand parts, by capacity: the two caps
    AWS enforces then add up to at most ``hourly``."""
    spot_share = hourly * spot / total if total else 0.0
    return spot_share, hourly - spot_share


def total_cap(parts: list[tuple[int, Any]]) -> float | None:
    """The sum of the hourly caps of the parts (capacity, cap) that have capacity; None if
    one of those has no cap."""
    total = 0.0
    for capacity, cap in parts:
        if capacity <= 0:
            continue
        if cap is None:
            return None
        total += float(cap)
    return total


def lower_cap(current: Any, ours: float) -> str:
    """The stricter of the config's own cap and ours."""
    if current is not None:
        try:
            if float(current) <= ours:
                return str(current)
        except ValueError:
            pass
    return price_text(ours)
