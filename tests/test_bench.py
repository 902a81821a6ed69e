"""The benchmark's quick mode runs, and its deterministic call counts stay within budget.

Only counts are asserted: times depend on the machine and belong in bench/RESULTS.md.
"""
import json
import os
import subprocess

from localaws.pool import script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUDGETS = {  # metric -> most allowed
    "api_calls_per_annex[1]": 5,       # DescribeRule, PutRule, PutTargets, PutObject,
    "api_calls_per_annex[100]": 5,     # RequestSpotFleet (GetFunction: once per 300 s)
    "api_calls_per_annex[200]": 5,
    "api_calls_growth": 0,
    "lease_noop_calls": 0,
    # Cancel, DescribeInstances, DeleteObject, RemoveTargets, DeleteRule and the look-ups
    # (DescribeSpotFleetRequests, DescribeRule), + 2 since issue 23: an expired event is
    # first confirmed on the annex's own rule (DescribeRule, ListTargetsByRule).
    "lease_enforce_calls[1]": 9,
    "lease_enforce_calls[100]": 9,
    "status_calls[200]": 3,            # one DescribeInstances page, and the leases in force
    "status_calls[1 annexes]": 3,      # (ListRules, ListRuleNamesByTarget), per region;
    "status_calls[20 annexes]": 3,     # the lease end from the journal
    "fsyncs_per_create": 3,            # the accepted request, the launch's start (+ WAL)
    "lost_requests": 0,
}


def test_quick_benchmark_runs_within_call_budgets():
    result = subprocess.run([script("python"), os.path.join(ROOT, "bench", "run.py"), "--quick",
                             "--awscli", ""], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = {m["metric"]: m["value"] for m in map(json.loads, (
        line for line in result.stdout.splitlines() if line.startswith("{")))}
    for metric, budget in BUDGETS.items():
        assert metrics[metric] <= budget, (metric, metrics[metric])
    assert metrics["lease_enforce_calls[1]"] == metrics["lease_enforce_calls[100]"]
    assert metrics["status_calls[1 annexes]"] == metrics["status_calls[20 annexes]"]
    # Memory stays flat as requests are served (annexd.process.memory): a budget, not a timing.
    assert metrics["daemon_rss_mib[30 creates]"] - metrics["daemon_rss_mib[10 creates]"] <= 10
    for timing in ("create_overhead_ratio", "cli_start_ms", "concurrent_creates_per_s",
                   "create_p99_ms", "daemon_rss_mib", "recovery_ms", "daemon_overhead_ms",
                   "daemon_rss_mib[10 creates]", "daemon_rss_mib[30 creates]"):
        assert metrics[timing] > 0


HEAVY = ("jsonschema", "htcondor2", "classad2", "boto3", "botocore")
CHECK_IMPORTS = """
import contextlib, io, sys
from condor_annex.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    main(sys.argv[1:])
print(",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def test_help_and_usage_errors_import_none_of_the_heavy_modules():
    """What keeps `condor_annex -help` at a fraction of `aws --version` (bench/run.py times it):
    jsonschema, the HTCondor bindings and boto3 are imported only by what needs them."""
    for args in (["-help"], ["-no-such-flag"]):
        result = subprocess.run([script("python"), "-c", CHECK_IMPORTS.format(heavy=HEAVY),
                                 *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "", (args, result.stdout)
