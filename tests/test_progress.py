"""Issue 19 finding 7: at a terminal, a create and an -off show each step as the daemon does
it (as -setup does); without a terminal, their output is what it always was."""
from __future__ import annotations

import os
import pty
import subprocess

from localaws.pool import script

from conftest import SPOT_CONFIG

CREATE_STEPS = ["checking the lease function and the annex name",
                "putting the lease in force: EventBridge rule steps",
                "pointing the lease rule at the lease function",
                "uploading the instances' configuration to s3://",
                "launching: RequestSpotFleet"]
OFF_STEPS = ["ending its fleets (terminating their instances)",
             "terminating its other instances",
             "deleting its configuration object",
             "removing its lease (EventBridge target, then rule)"]


def at_terminal(pool, *args: str) -> tuple[int, list[str]]:
    """Run condor_annex with a pty as its terminal; its status and the lines it wrote there,
    in the order they arrived."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([script("condor_annex"), *args], env=pool.env(),
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(timeout=60), output.decode().replace("\r\n", "\n").splitlines()


def in_order(lines: list[str], wanted: list[str]) -> list[int]:
    """Where each wanted line starts (after "condor_annex: "), asserting they all appear."""
    found = []
    for text in wanted:
        matches = [n for n, line in enumerate(lines) if line.startswith(f"condor_annex: {text}")]
        assert matches, f"{text!r} not in {lines}"
        found.append(matches[0])
    return found


def test_create_and_off_show_their_steps_at_a_terminal(aws, pool, daemon, with_keys):
    status, lines = at_terminal(pool, "-annex-name", "steps", "-count", "2", "-yes",
                                "-lease-duration", "600", "-lease-function-arn", aws.lease_arn,
                                *with_keys, SPOT_CONFIG)
    assert status == 0, lines
    shown = in_order(lines, CREATE_STEPS)
    assert shown == sorted(shown)
    started = next(n for n, line in enumerate(lines) if "annex steps started" in line)
    assert shown[-1] < started  # the steps come as they happen, before the outcome
    status, lines = at_terminal(pool, "-annex-name", "steps", "-off", *with_keys)
    assert status == 0, lines
    shown = in_order(lines, OFF_STEPS)
    assert shown == sorted(shown) and shown[-1] < len(lines) - 1
    assert lines[-1].startswith("Annex steps is off")
    assert not any(aws.annex_resources("steps").values())


def test_without_a_terminal_nothing_extra(aws, run_annex, with_keys):
    created = run_annex("-annex-name", "quiet", "-count", "2", "-lease-duration", "600",
                        "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    assert created.returncode == 0, created.stderr
    ended = run_annex("-annex-name", "quiet", "-off", *with_keys)
    assert ended.returncode == 0, ended.stderr
    everything = created.stdout + created.stderr + ended.stdout + ended.stderr
    for step in CREATE_STEPS + OFF_STEPS:
        assert step.split(":")[0] not in everything
    assert created.stdout.startswith("sfr-") and ended.stdout.startswith("Annex quiet is off")
