"""Put two benchmark runs side by side: ``python bench/compare.py BEFORE AFTER``.

Each file is the JSON lines ``bench/run.py`` prints (other lines are ignored).  Prints a
Markdown table with one row per metric, in the order of the AFTER run (metrics only one run
has are shown with "—" for the other); bench/RESULTS.md holds one such table.
"""
from __future__ import annotations

import json
import sys


def load(path: str) -> dict[str, dict]:
    metrics = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("{"):
                entry = json.loads(line)
                metrics[entry["metric"]] = entry
    return metrics


def table(before: dict[str, dict], after: dict[str, dict]) -> str:
    names = list(after) + [name for name in before if name not in after]
    rows = ["| metric | before | after | unit |", "|---|---:|---:|---|"]
    for name in names:
        unit = (after.get(name) or before.get(name))["unit"]
        cells = [str(run[name]["value"]) if name in run and run[name]["value"] is not None
                 else "—" for run in (before, after)]
        rows.append(f"| `{name}` | {cells[0]} | {cells[1]} | {unit} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    print(table(load(argv[0]), load(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
