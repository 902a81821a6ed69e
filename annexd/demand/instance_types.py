"""What an EC2 instance type offers a job: CPUs, memory (MiB), GPUs and HTCondor's ``Arch``.

The table ships with the daemon (``instance_types.json``), made from EC2's own
DescribeInstanceTypes records, so planning needs no AWS call and works offline (``-plan``).
Refresh it from a saved DescribeInstanceTypes answer (``aws ec2 describe-instance-types
--output json``, or any list of its ``InstanceTypes`` records)::

    python -m annexd.demand.instance_types -refresh RECORDS.json

Memory is what EC2 says the type has; the kernel keeps a little of it, so a job asking for
exactly all of it may not start on a real instance.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

TABLE = os.path.join(os.path.dirname(__file__), "instance_types.json")
#: EC2's architecture names, as HTCondor's ``Arch`` says them.
ARCH = {"x86_64": "X86_64", "arm64": "aarch64", "i386": "INTEL"}


@dataclass(frozen=True)
class InstanceType:
    name: str
    cpus: int
    memory_mib: int
    gpus: int
    arch: str

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


def row(record: dict[str, Any]) -> list[Any] | None:
    """A DescribeInstanceTypes record as a table row [cpus, memory MiB, GPUs, Arch]; None for
    a type HTCondor's Linux images cannot run (Mac hosts)."""
    arches = [ARCH[a] for a in record.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
              if a in ARCH]
    if not arches:
        return None
    gpus = sum(gpu.get("Count", 0) for gpu in record.get("GpuInfo", {}).get("Gpus", []))
    return [record["VCpuInfo"]["DefaultVCpus"], record["MemoryInfo"]["SizeInMiB"], gpus,
            arches[-1]]


def rows(records: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    found = {record["InstanceType"]: row(record) for record in records}
    return {name: value for name, value in sorted(found.items()) if value is not None}


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, list[Any]]:
    with open(TABLE, encoding="utf-8") as f:
        return json.load(f)["types"]


def lookup(name: str | None) -> InstanceType | None:
    """The type's resources, or None when it is unknown (or chosen by AWS: no name)."""
    found = _table().get(name or "")
    return None if found is None else InstanceType(name or "", *found)


def _dump(types: dict[str, list[Any]]) -> str:
    lines = [f"  {json.dumps(name)}: {json.dumps(value)}" for name, value in types.items()]
    return ('{"comment": "EC2 DescribeInstanceTypes: [DefaultVCpus, MemoryInfo.SizeInMiB, '
            'GPUs, HTCondor Arch]; refresh with python -m annexd.demand.instance_types '
            '-refresh",\n "types": {\n' + ",\n".join(lines) + "\n}}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "-refresh":
        print("usage: python -m annexd.demand.instance_types -refresh RECORDS.json",
              file=sys.stderr)
        return 1
    with open(args[1], encoding="utf-8") as f:
        data = json.load(f)
    records = data.get("InstanceTypes", data) if isinstance(data, dict) else data
    if isinstance(records, dict):   # {name: record}, as moto ships them
        records = list(records.values())
    with open(TABLE, "w", encoding="utf-8") as f:
        f.write(_dump(rows(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
