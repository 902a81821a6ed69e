"""``condor_annex -plan JOBS_FILE config.json`` (issue 26, requirement 6): what an auto annex
would order for a recorded queue, and why, with no AWS call and no daemon."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from condor_annex import cli

DATA = os.path.join(os.path.dirname(__file__), "data")
QUEUE = os.path.join(DATA, "queue-burst.ads")
CONFIG = {"IamFleetRole": "arn:aws:iam::123456789012:role/r",
          "AllocationStrategy": "priceCapacityOptimized", "TargetCapacity": 1,
          "LaunchSpecifications": [{"ImageId": "ami-1", "InstanceType": t}
                                   for t in ("m5.large", "m5.xlarge", "r5.2xlarge")]}


@pytest.fixture
def config_file(tmp_path, condor_config):
    condor_config("ANNEX_DEFAULT_LEASE_DURATION = 3600")
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(CONFIG))
    return str(path)


def test_plan_of_the_recorded_queue(config_file, capsys):
    status = cli.main(["-plan", QUEUE, "-annex-name", "burst", "-owner", "alice", config_file])
    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines() == [
        "Plan for auto annex burst (nothing is ordered: -plan calls no AWS API):",
        "  demand: 15 idle jobs; 0 can run on what the annex has",
        "  cannot run: 3 jobs ask for 512 GiB; the largest type in the config has 64",
        "  cannot run: 2 jobs ask for 1 GPU; the config's types have at most 0",
        "  order: 4 x m5.xlarge, 3 x m5.large",
        "  committed at worst: $1.07 until the lease ends"]


def test_plan_json_within_max_cost(config_file, capsys):
    status = cli.main(["-plan", QUEUE, "-annex-name", "burst", "-owner", "alice",
                       "-max-cost", "0.5", "-json", config_file])
    found = json.loads(capsys.readouterr().out)
    assert status == 0
    # Two xlarges for the 4-CPU jobs; a third would break the cap, a large still fits.
    assert found["orders"] == {"m5.xlarge": 2, "m5.large": 1}
    assert found["worst_case_cost"] <= 0.5
    assert "over -max-cost ($0.50)" in found["held_by"]


def test_plan_for_another_owner_sees_only_their_jobs(config_file, capsys):
    assert cli.main(["-plan", QUEUE, "-annex-name", "burst", "-owner", "bob", "-json",
                     config_file]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["jobs"], found["orders"]) == (5, {"m5.large": 3})


@pytest.mark.parametrize("argv, status, message", [
    (["-plan", QUEUE, "CONFIG"], 1, "-plan needs -annex-name NAME"),
    (["-plan", QUEUE, "-annex-name", "b"], 1, "-plan needs the fleet config file"),
    (["-plan", "/nonexistent.ads", "-annex-name", "b", "CONFIG"], 2,
     "cannot read ads from /nonexistent.ads"),
    (["-plan", QUEUE, "-annex-name", "b", "-max-cost", "lots", "CONFIG"], 1,
     "-max-cost: expected an amount of US dollars"),
    (["-plan", QUEUE, "-annex-name", "b", "-max-instances", "0", "CONFIG"], 1,
     "-max-instances: expected a positive whole number"),
    (["-plan", QUEUE, "-annex-name", "b", "-count", "3", "CONFIG"], 1,
     "-count cannot be used here"),
    (["-max-cost", "3", "-annex-name", "b", "CONFIG"], 1, "-max-cost cannot be used here"),
])
def test_plan_errors(config_file, capsys, argv, status, message):
    argv = [config_file if arg == "CONFIG" else arg for arg in argv]
    assert cli.main(argv) == status
    assert message in capsys.readouterr().err


def test_plan_calls_no_aws(config_file, tmp_path):
    """No connection is made at all (neither AWS nor the daemon): every socket connect and
    every botocore API call fails loudly in the child that runs -plan."""
    code = "\n".join([
        "import socket, sys",
        "import botocore.client",
        "def refuse(*args, **kwargs):",
        "    print('CONNECTED', file=sys.stderr); raise SystemExit(42)",
        "socket.socket.connect = refuse",
        "botocore.client.BaseClient._make_api_call = refuse",
        "from condor_annex import cli",
        f"sys.exit(cli.main(['-plan', {QUEUE!r}, '-annex-name', 'burst', '-owner', 'alice', "
        f"{config_file!r}]))"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "CONNECTED" not in result.stderr
    assert "order: 4 x m5.xlarge, 3 x m5.large" in result.stdout


@pytest.mark.parametrize("example, orders", [
    ("ec2-fleet.json", {"m5a.large": 3}),              # EC2 Fleet: the cheapest override
    ("spot-fleet.json", {"m5.large": 3}),
    ("spot-fleet-launch-template.json", {"m5a.large": 3}),
])
def test_plan_of_each_fleet_kind(condor_config, capsys, example, orders):
    condor_config("")
    path = os.path.join(os.path.dirname(DATA), os.pardir, "examples", example)
    assert cli.main(["-plan", QUEUE, "-annex-name", "burst", "-owner", "alice", "-json",
                     path]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["orders"] == orders
    assert "4 jobs ask for 4 CPUs; the largest type in the config has 2" in [
        u["reason"] for u in found["unfit"]]


def test_types_chosen_by_aws_plan_nothing_and_say_so(condor_config, capsys, tmp_path):
    condor_config("")
    config = {"IamFleetRole": "arn:aws:iam::123456789012:role/r",
              "AllocationStrategy": "priceCapacityOptimized", "TargetCapacity": 2,
              "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": {
                  "LaunchTemplateName": "tmpl", "Version": "1"}}]}
    path = tmp_path / "template.json"
    path.write_text(json.dumps(config))
    assert cli.main(["-plan", QUEUE, "-annex-name", "burst", "-owner", "alice", str(path)]) == 0
    out = capsys.readouterr().out
    assert "order: nothing" in out
    assert "skipped a type AWS chooses: its CPUs and memory are not known here" in out
