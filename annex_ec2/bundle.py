"""Build the single-file ``condor_annex_ec2``: ``python -m annex_ec2.bundle OUT.pyz``.

An annex image runs the instance side on its own Python (3.9 or newer, with the
distribution's boto3), not in a virtualenv of this project, so it gets one file: a zipapp
(:mod:`zipapp`) holding the ``annex_ec2`` package alone -- which imports nothing but the
standard library, boto3 and botocore -- and a ``__main__`` that runs ``condor_annex_ec2``.
Copy it to the image and run ``sudo python3 OUT.pyz -install -enable`` there
(:mod:`annex_ec2.install`).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipapp

from .closedpipe import quiet_when_output_closes

INTERPRETER = "/usr/bin/env python3"
PACKAGE = "annex_ec2"
MINIMUM_PYTHON = (3, 9)
MAIN = f'''"""condor_annex_ec2 as a single file (built by python -m annex_ec2.bundle)."""
import sys

if sys.version_info < {MINIMUM_PYTHON!r}:
    sys.exit("condor_annex_ec2 needs Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer, "
             "not " + sys.version.split()[0])

from annex_ec2.command import main

sys.exit(main())
'''


def package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _not_shipped(directory: str, names: list[str]) -> list[str]:
    """For copytree: the package's modules and its image/ files go into the bundle; caches,
    editor leftovers and hidden files do not."""
    if os.path.samefile(directory, package_dir()):
        return [name for name in names if not (name.endswith(".py") or name == "image")]
    return [name for name in names if name.startswith(".") or name == "__pycache__"]


def build(target: str, interpreter: str = INTERPRETER) -> str:
    """Write the bundle to ``target`` (atomically, mode 0755); returns ``target``."""
    source = package_dir()
    if not os.path.isdir(source):
        raise RuntimeError(f"{source} is not a directory: build the bundle from a source "
                           "checkout or an installed package, not from a bundle")
    partial = os.path.join(os.path.dirname(os.path.abspath(target)),
                           f".{os.path.basename(target)}.new")
    with tempfile.TemporaryDirectory() as staging:
        shutil.copytree(source, os.path.join(staging, PACKAGE), ignore=_not_shipped)
        with open(os.path.join(staging, "__main__.py"), "w", encoding="utf-8") as handle:
            handle.write(MAIN)
        zipapp.create_archive(staging, partial, interpreter=interpreter, compressed=True)
    os.chmod(partial, 0o755)
    os.replace(partial, target)
    return target


@quiet_when_output_closes
def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m annex_ec2.bundle OUT.pyz", file=sys.stderr)
        return 2
    target = build(args[0])
    print(f"{target}: condor_annex_ec2 as one file ({os.path.getsize(target)} bytes); on the "
          f"image: sudo python3 {os.path.basename(target)} -install -enable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
