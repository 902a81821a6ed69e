"""Launching an annex's instances: one interface (:class:`.base.Kind`), one implementation per
kind of annex -- a Spot Fleet, an EC2 Fleet, or on-demand instances.

``kind_of(plan.annex_type)`` is how the rest of the daemon reaches the kind-specific parts;
``recognise(config)`` tells the two fleet configs apart by their shape.
"""
from __future__ import annotations

from typing import Any

from annexd.launch.base import Built, Kind, LaunchConfigError, Option
from annexd.launch.ec2fleet import Ec2Fleet
from annexd.launch.ec2fleet import looks_like as _looks_like_ec2_fleet
from annexd.launch.ondemand import OnDemand
from annexd.launch.spotfleet import SpotFleet

__all__ = ["Built", "Kind", "LaunchConfigError", "Option", "KINDS", "kind_of", "recognise",
           "ON_DEMAND", "SPOT_FLEET", "EC2_FLEET"]

SPOT_FLEET, EC2_FLEET, ON_DEMAND = SpotFleet(), Ec2Fleet(), OnDemand()
KINDS: dict[str, Kind] = {kind.annex_type: kind for kind in (SPOT_FLEET, EC2_FLEET, ON_DEMAND)}


def kind_of(annex_type: str) -> Kind:
    return KINDS[annex_type]


def recognise(config: Any) -> Kind:
    """The kind a fleet config file is for: CreateFleet's input has a
    TargetCapacitySpecification; anything else is read as a Spot Fleet config."""
    return EC2_FLEET if _looks_like_ec2_fleet(config) else SPOT_FLEET
