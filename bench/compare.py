"""Put two benchmark runs side by side, or one run beside the figures committed in
docs/benchmarks.md, and say which metrics moved.

    python bench/compare.py BEFORE AFTER              # two runs' JSON lines: a Markdown table
    python bench/compare.py --committed full AFTER    # AFTER against the committed full run
    python bench/compare.py --block FULL WHEN QUICK WHEN  # the block docs/benchmarks.md holds

Each file is the JSON lines ``bench/run.py`` prints (other lines are ignored).  The table has
one row per metric, in the order of the AFTER run (metrics only one run has are shown with
"—" for the other).  ``bench/run.py`` itself ends with the comparison against the committed
figures of its mode (full or quick).

Which moved: counts (calls, requests) are exact, so any change moved; fsyncs per create are an
average over ten creates (a WAL checkpoint lands in some and not others), so they move beyond
NOISE["fsyncs"]; times, rates and memory depend on the machine and move only beyond a relative
threshold (NOISE), and say better or worse by the metric's direction (creates/s: higher is
better; everything else lower).  Reference metrics (REFERENCE) measure moto or the AWS CLI,
not this code: shown, never judged.
"""
from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(ROOT, "docs", "benchmarks.md")

#: By unit: ("abs", n) moves beyond an absolute difference of n; ("rel", f) beyond the fraction
#: f of the committed value.  Two shared cores: a time moves by a quarter between two runs of
#: the same code (docs/benchmarks.md), so a smaller move is not told from noise.
NOISE: dict[str, tuple[str, float]] = {
    "calls": ("abs", 0), "requests": ("abs", 0), "fsyncs": ("abs", 0.5),
    "ms": ("rel", 0.25), "ratio": ("rel", 0.25), "creates/s": ("rel", 0.25),
    "MiB": ("rel", 0.10),
}
HIGHER_IS_BETTER = {"creates/s"}
#: Not this code's figures: the same calls made directly against moto, and the AWS CLI.
REFERENCE = {"direct_sequence_ms_p50", "awscli_start_ms"}

#: The fenced block of docs/benchmarks.md that holds the committed figures.
_BLOCK = re.compile(r"<!-- committed figures -->\s*```json\n(.*?)```", re.DOTALL)


def load(path: str) -> dict[str, dict]:
    metrics = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("{"):
                entry = json.loads(line)
                metrics[entry["metric"]] = entry
    return metrics


def committed(mode: str, path: str = FIGURES) -> dict[str, Any] | None:
    """The committed run of ``mode`` ("full" or "quick"): {"metrics": {name: value}, "units":
    {name: unit}, and what it was run on}; None if the doc has none."""
    try:
        with open(path, encoding="utf-8") as handle:
            found = _BLOCK.search(handle.read())
    except FileNotFoundError:
        return None
    return json.loads(found.group(1)).get(mode) if found else None


def verdict(metric: str, unit: str, before: float | None, after: float | None) -> str:
    """"better", "worse", "same" (within the noise), "reference", or "new"/"gone"."""
    if metric in REFERENCE:
        return "reference"
    if before is None or after is None:
        return "new" if before is None and after is not None else \
            "gone" if after is None and before is not None else "same"
    kind, amount = NOISE.get(unit, ("rel", 0.25))
    limit = amount if kind == "abs" else abs(before) * amount
    if abs(after - before) <= limit:
        return "same"
    better = after > before if unit in HIGHER_IS_BETTER else after < before
    return "better" if better else "worse"


Figures = dict[str, tuple[Any, str]]  # metric -> (value, unit)


def moved(before: Figures, after: Figures, partial: bool = False) \
        -> list[tuple[str, str, Any, Any, str]]:
    """(metric, unit, before, after, verdict) for every metric of ``after``, then those only
    ``before`` has ("gone"), unless ``after`` is a partial run (bench/run.py --only)."""
    rows = []
    for name, (value, unit) in after.items():
        old = before.get(name, (None, unit))[0]
        rows.append((name, unit, old, value, verdict(name, unit, old, value)))
    if not partial:
        rows += [(name, unit, value, None, verdict(name, unit, value, None))
                 for name, (value, unit) in before.items() if name not in after]
    return rows


def figures_of(run: dict[str, Any]) -> Figures:
    """A committed run's figures, as :func:`moved` takes them."""
    return {name: (value, run["units"][name]) for name, value in run["metrics"].items()}


def report(rows: list[tuple[str, str, Any, Any, str]], against: str) -> str:
    """The comparison as text: every row, then a line naming what moved."""
    width = max([len(row[0]) for row in rows] + [6])
    lines = [f"against {against}:", f"{'metric':<{width}}  {'committed':>10} {'now':>10}  verdict"]
    for name, unit, before, after, said in rows:
        shown = [("—" if value is None else str(value)) for value in (before, after)]
        lines.append(f"{name:<{width}}  {shown[0]:>10} {shown[1]:>10}  {said}")
    for word in ("worse", "better"):
        names = [row[0] for row in rows if row[4] == word]
        lines.append(f"{word}: {', '.join(names) if names else 'none'}")
    return "\n".join(lines)


def table(before: dict[str, dict], after: dict[str, dict]) -> str:
    names = list(after) + [name for name in before if name not in after]
    rows = ["| metric | before | after | unit |", "|---|---:|---:|---|"]
    for name in names:
        unit = (after.get(name) or before.get(name))["unit"]
        cells = [str(run[name]["value"]) if name in run and run[name]["value"] is not None
                 else "—" for run in (before, after)]
        rows.append(f"| `{name}` | {cells[0]} | {cells[1]} | {unit} |")
    return "\n".join(rows)


def block(full: str, full_when: str, quick: str, quick_when: str) -> str:
    """The committed-figures block for docs/benchmarks.md, from a full and a quick run's
    logs; each ``when`` says when, how and at which load that run was made."""
    runs = {}
    for mode, path, when in (("full", full, full_when), ("quick", quick, quick_when)):
        entries = load(path)
        runs[mode] = {"when": when,
                      "metrics": {name: entry["value"] for name, entry in entries.items()},
                      "units": {name: entry["unit"] for name, entry in entries.items()}}
    return "<!-- committed figures -->\n```json\n" + json.dumps(runs, indent=1) + "\n```"


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "--block":
        print(block(*argv[1:]))
        return 0
    if len(argv) == 3 and argv[0] == "--committed":
        figures = committed(argv[1])
        if figures is None:
            print(f"{FIGURES} has no committed {argv[1]} run", file=sys.stderr)
            return 2
        after = {name: (entry["value"], entry["unit"]) for name, entry in load(argv[2]).items()}
        print(report(moved(figures_of(figures), after), f"the committed {argv[1]} run"))
        return 0
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    print(table(load(argv[0]), load(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
