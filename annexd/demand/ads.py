"""Where demand and supply are read: ``ANNEX_DEMAND_JOBS`` (idle jobs) and
``ANNEX_DEMAND_SLOTS`` (annex slots).

Each knob is either ``file:PATH`` -- ads in ``condor_q -long`` / ``condor_status -long``
format, blank-line separated, re-read every cycle, so the whole loop (and ``-plan``) runs
without HTCondor daemons -- or unset, meaning the local schedd and the pool's collector
(:mod:`.condor`, through ``htcondor2``).  Reading a file checks every line: ``classad2``
silently drops a line it cannot parse, or keeps the start of a value ("2 GiB" is 2), and a
wrong ``RequestMemory`` would plan for the wrong job.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import classad2

#: What the file reader takes as one attribute line; anything else is an error naming it.
ATTRIBUTE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=")
FILE_PREFIX = "file:"
#: ``condor_q -long -global`` heads each schedd's ads with ``-- Schedd: NAME : <ADDRESS>``.
HEADER = "-- "


class DemandError(ValueError):
    """Demand or supply cannot be read; the message names the source and the line."""


def parse_ads(text: str, where: str) -> list[classad2.ClassAd]:
    """The ads in ``text`` (old syntax, blank-line separated; ``-- `` header lines skipped)."""
    ads: list[classad2.ClassAd] = []
    block: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines() + [""], start=1):
        if line.startswith(HEADER):
            continue
        if line.strip():
            block.append((number, line))
        elif block:
            ads.append(_parse_block(block, where))
            block = []
    return ads


def _parse_block(block: list[tuple[int, str]], where: str) -> classad2.ClassAd:
    ad = classad2.parseOne("\n".join(line for _, line in block), classad2.ParserType.Old)
    keys = {key.lower() for key in (ad.keys() if ad is not None else ())}
    for number, line in block:
        match = ATTRIBUTE.match(line)
        if not match or match.group(1).lower() not in keys:
            raise DemandError(f"{where} line {number}: not a ClassAd attribute "
                              f"(NAME = EXPRESSION): {line.strip()[:80]!r}")
        try:   # the old-syntax parser keeps what it can of a value ("2 GiB" is 2)
            classad2.ExprTree(line[match.end():].strip())
        except classad2.ClassAdException:
            raise DemandError(f"{where} line {number}: the value of {match.group(1)} is not a "
                              f"ClassAd expression: {line.strip()[:80]!r}") from None
    return ad


def read_file(path: str) -> list[classad2.ClassAd]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DemandError(f"cannot read ads from {path}: {exc}") from None
    return parse_ads(text, path)


@dataclass(frozen=True)
class Source:
    """One knob's source of ads; ``read(constraint, projection)`` returns the ads."""

    description: str
    read: Callable[[str, list[str]], list[classad2.ClassAd]]


def file_source(path: str) -> Source:
    """A ``file:`` source: the file holds what the query would have returned; the constraint
    is applied here, as the schedd or collector would have."""
    def read(constraint: str, projection: list[str]) -> list[classad2.ClassAd]:
        test = classad2.ExprTree(constraint)
        return [ad for ad in read_file(path) if test.eval(ad) is True]
    return Source(f"file {path}", read)


def source(knob_value: str | None, default: Callable[[], Source], knob: str) -> Source:
    """The source a knob names: ``file:PATH``, or ``default()`` when unset."""
    if knob_value is None:
        return default()
    if knob_value.startswith(FILE_PREFIX) and knob_value[len(FILE_PREFIX):].strip():
        return file_source(knob_value[len(FILE_PREFIX):].strip())
    raise DemandError(f"{knob} = {knob_value[:80]!r}: expected file:PATH, or nothing for the "
                      "local HTCondor daemons")
