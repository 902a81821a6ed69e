"""``-version`` of condor_annex and condor_annexd, in the form of HTCondor's ``condor_version``.

HTCondor's tools answer ``-version`` with ``$CondorVersion: … $`` and ``$CondorPlatform: … $``
lines, which admins paste into bug reports and scripts grep.  Ours says the same kinds of
things: this package's version first, then the HTCondor bindings it runs with (the HTCondor
whose configuration it reads), then the platform.  Versions come from the installed
distributions' metadata: nothing heavy is imported, so ``-version`` is as fast as ``-help``.
``importlib.metadata`` itself is imported only when ``-version`` asks: it pulls in ``email``,
``zipfile`` and ``csv``, 15 ms of every ``condor_annex`` command's start-up otherwise (the CLI
imports this module for its flag table).
"""
from __future__ import annotations

import platform

PACKAGE = "condor-annexd"


def _installed(distribution: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_text(program: str) -> str:
    """What ``PROGRAM -version`` prints."""
    ours = _installed(PACKAGE)
    bindings = _installed("htcondor")
    return "\n".join([
        f"$CondorAnnexVersion: {ours} PackageID: {PACKAGE}-{ours} Program: {program} $",
        f"$CondorVersion: {bindings} PackageID: htcondor-{bindings} (Python bindings) $",
        f"$CondorPlatform: {platform.machine().upper()}-{platform.system()} "
        f"Python-{platform.python_version()} $"])
