"""The benchmark's quick mode runs, and its deterministic counts (calls, fsyncs) stay within
budget.

Only counts are asserted: times depend on the machine and are recorded in docs/benchmarks.md,
whose committed figures bench/run.py compares every run with.  The budgets are also written in
docs/benchmarks.md, each with why it is what it is: a budget raised here without its line
there fails (test_budgets_are_the_ones_the_benchmarks_doc_explains).
"""
import json
import os
import re
import subprocess
import sys

from localaws.pool import script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import compare  # noqa: E402  (bench/compare.py)

BUDGETS = {  # metric -> most allowed
    "api_calls_per_annex[1]": 5,       # DescribeRule, PutRule, PutTargets, PutObject,
    "api_calls_per_annex[100]": 5,     # RequestSpotFleet (GetFunction: once per 300 s)
    "api_calls_per_annex[200]": 5,
    "api_calls_growth": 0,
    "lease_noop_calls": 0,
    # Cancel, DescribeInstances, DeleteObject, RemoveTargets, DeleteRule and the look-ups
    # (DescribeSpotFleetRequests, DescribeRule), + 2 since issue 23: an expired event is
    # first confirmed on the annex's own rule (DescribeRule, ListTargetsByRule); + 1 since
    # issue 23 requirement 5: the listing of the annex's instances' copies (ListObjectsV2).
    "lease_enforce_calls[1]": 10,
    "lease_enforce_calls[100]": 10,
    "status_calls[200]": 2,            # one DescribeInstances page, and the rules that
    "status_calls[1 annexes]": 2,      # target the lease function (ListRuleNamesByTarget),
    "status_calls[20 annexes]": 2,     # per region; the lease end from the journal
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
                   "daemon_overhead_ms[20 annexes]", "status_ms[1 annexes]",
                   "status_ms[20 annexes]", "daemon_rss_mib[10 creates]",
                   "daemon_rss_mib[30 creates]"):
        assert metrics[timing] > 0
    # It ends with what moved against the committed quick run, metric by metric.
    said = result.stdout.split("against the committed quick run", 1)[1]
    for metric in BUDGETS:
        assert re.search(rf"^{re.escape(metric)} .* (same|better|worse|new)$", said, re.M), metric
    assert re.search(r"^worse: ", said, re.M) and re.search(r"^better: ", said, re.M)


def test_budgets_are_the_ones_the_benchmarks_doc_explains():
    """Raising a budget takes a line in docs/benchmarks.md saying why."""
    with open(os.path.join(ROOT, "docs", "benchmarks.md"), encoding="utf-8") as handle:
        doc = handle.read()
    block = re.search(r"<!-- budgets -->\s*```json\n(.*?)```", doc, re.DOTALL)
    assert block, "docs/benchmarks.md has no budgets block"
    explained = json.loads(block.group(1))
    assert {metric: entry["most"] for metric, entry in explained.items()} == BUDGETS
    for metric, entry in explained.items():
        assert len(entry["why"].split()) >= 4, metric
    # ... and the committed figures keep to them.
    for mode in ("full", "quick"):
        figures = compare.committed(mode)["metrics"]
        for metric, budget in BUDGETS.items():
            if metric in figures:
                assert figures[metric] <= budget, (mode, metric)


def test_the_comparison_tells_noise_from_a_move():
    assert compare.verdict("status_calls[1 annexes]", "calls", 2, 3) == "worse"
    assert compare.verdict("status_calls[1 annexes]", "calls", 3, 2) == "better"
    assert compare.verdict("fsyncs_per_create", "fsyncs", 2.0, 2.3) == "same"
    assert compare.verdict("daemon_overhead_ms", "ms", 12.0, 13.5) == "same"
    assert compare.verdict("daemon_overhead_ms", "ms", 12.0, 20.7) == "worse"
    assert compare.verdict("concurrent_creates_per_s", "creates/s", 6.9, 12.5) == "better"
    assert compare.verdict("concurrent_creates_per_s", "creates/s", 12.5, 6.9) == "worse"
    assert compare.verdict("direct_sequence_ms_p50", "ms", 20, 60) == "reference"
    assert compare.verdict("status_ms[200 annexes]", "ms", None, 500) == "new"


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
