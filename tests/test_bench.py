"""The benchmark's quick mode runs, and its deterministic call counts stay within budget.

Only counts are asserted: times depend on the machine and belong in bench/RESULTS.md.
"""
import json
import os
import subprocess

from localaws.pool import script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUDGETS = {  # metric -> most calls allowed
    "api_calls_per_annex[1]": 6,       # GetFunction, DescribeRule, PutRule, PutTargets,
    "api_calls_per_annex[100]": 6,     # PutObject, RequestSpotFleet
    "api_calls_per_annex[200]": 6,
    "api_calls_growth": 0,
    "lease_noop_calls": 0,
    "lease_enforce_calls[1]": 8,
    "lease_enforce_calls[100]": 8,
    "status_calls[200]": 2,            # ListTargetsByRule + one DescribeInstances page
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
    for timing in ("create_overhead_ratio", "cli_start_ms", "concurrent_creates_per_s",
                   "create_p99_ms", "daemon_rss_mib", "recovery_ms"):
        assert metrics[timing] > 0
