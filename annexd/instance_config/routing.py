"""Which jobs an annex's slots start: the one place the START expression is written.

Two ways for a job to ask for an annex, both honoured:

* HTCondor's current one (``feature:HPC_ANNEX``, ``htcondor job submit --annex-name``): the
  job says ``TargetAnnexName = "x"`` and the slot, which advertises ``AnnexName``, checks
  ``MY.AnnexName == TARGET.TargetAnnexName``;
* the original ``condor_annex``'s: the job says ``MayUseAWS = true`` (any annex will do).

A job that says neither never starts on an annex slot, whatever its owner: the owner check
(``-owner``, by default the annex's creator; ``-no-owner`` drops it) narrows the gate and
never replaces it.  Every attribute is scoped (``MY.``/``TARGET.``): a startd would find an
unscoped ``MayUseAWS`` in the job after missing it in the slot, but ``classad2``'s
``symmetricMatch`` does not look there, so scoped names mean the same in both.  The owner
check uses ``member()`` with a list literal, which both evaluate (``classad2`` evaluates
``stringListMember()`` to ERROR).

The schedd side (the job's own Requirements, so that a job for annex x runs nowhere else) is
``config.d/85annex-jobs``; this module is the startd side, and what demand matching
evaluates against a job.
"""
from __future__ import annotations

import re
from typing import Sequence

import classad2

from annexd.rpc import protocol

#: The job asked for this annex by name, or for any annex (the original's opt-in).
GATE = "(MY.AnnexName == TARGET.TargetAnnexName || TARGET.MayUseAWS == true)"


def owner_check(owners: Sequence[str]) -> str:
    """``member(TARGET.Owner, {"a", "b"})``: only these users' jobs; "" for anyone's."""
    for name in owners:
        if not re.search(protocol.USER_NAME_PATTERN, name):
            raise ValueError(f"{name!r} is not a user name")
    if not owners:
        return ""
    return f"member(TARGET.Owner, {{{', '.join(classad2.quote(n) for n in owners)}}})"


def start_expression(owners: Sequence[str]) -> str:
    """The annex's own START clause, evaluated in the slot's ad (``MY``, which advertises
    ``AnnexName``) against a job's (``TARGET``).  ``owners`` empty: anyone's jobs (that ask
    for the annex)."""
    check = owner_check(owners)
    return f"{GATE} && {check}" if check else GATE
