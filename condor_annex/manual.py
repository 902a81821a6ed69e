"""condor_annex(1) and condor_annexd(8), and README's generated tables, written out.

The rendering is :mod:`annexd.usage.manpage`'s; the pages shipped in ``condor_annex/man/``
are this module's output, and a test checks that they still are.

``python -m condor_annex.manual -write DIR`` writes ``DIR/man1/condor_annex.1`` and
``DIR/man8/condor_annexd.8`` (``-write /usr/local/share/man`` puts them in every user's
MANPATH); ``-markdown options|exit-status PROGRAM`` prints a README table, and
``-readme README.md`` refreshes all of README's generated tables in place.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Sequence

from annexd.usage.manpage import Page, markdown_exit_status, markdown_options, roff
from annex_ec2.closedpipe import quiet_when_output_closes

#: Where the generated pages are kept in the source tree and installed as package data:
#: a directory laid out as a MANPATH entry (man1/, man8/).
MAN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "man")


# --- the two pages --------------------------------------------------------------------------

def pages() -> tuple[Page, ...]:
    """condor_annex(1) and condor_annexd(8), each built from its program's own tables."""
    from annexd.process.about import PAGE as DAEMON_PAGE

    from .cli import PAGE as CLI_PAGE
    return CLI_PAGE, DAEMON_PAGE


def write(directory: str) -> list[str]:
    """Write every page under ``directory`` (a MANPATH entry); return the files written."""
    written = []
    for page in pages():
        target = os.path.join(directory, page.path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(roff(page))
        written.append(target)
    return written


def readme_blocks() -> dict[str, str]:
    """README's generated tables by block name (``<!-- BEGIN name: command -->``)."""
    from annexd.config import knobref
    blocks = {"knobs": knobref.markdown()}
    for page in pages():
        blocks[f"{page.name} flags"] = markdown_options(page)
        blocks[f"{page.name} exit status"] = markdown_exit_status(page)
    return blocks


def refresh_readme(path: str) -> list[str]:
    """Replace each generated block of the README at ``path``; return the names refreshed."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    refreshed = []
    for name, table in readme_blocks().items():
        pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)}: [^\n]*-->\n).*?"
                             rf"(<!-- END {re.escape(name)} -->)", re.DOTALL)
        text, count = pattern.subn(lambda match: match.group(1) + table + match.group(2), text)
        refreshed += [name] * count
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return refreshed


USAGE = """usage: python -m condor_annex.manual -write DIR
       python -m condor_annex.manual -markdown options|exit-status condor_annex|condor_annexd
       python -m condor_annex.manual -readme README.md

-write DIR      write man1/condor_annex.1 and man8/condor_annexd.8 under DIR
                (e.g. /usr/local/share/man; condor_annex/man to refresh the shipped copies)
-markdown ...   print README's table of that program's flags or exit statuses
-readme FILE    refresh every generated table in FILE (knobs, flags, exit statuses)"""


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "-write":
        for path in write(args[1]):
            print(path)
        return 0
    if len(args) == 2 and args[0] == "-readme":
        for name in refresh_readme(args[1]):
            print(f"refreshed {name}")
        return 0
    by_name = {page.name: page for page in pages()}
    if len(args) == 3 and args[0] == "-markdown" and args[2] in by_name:
        table = {"options": markdown_options, "exit-status": markdown_exit_status}.get(args[1])
        if table is not None:
            sys.stdout.write(table(by_name[args[2]]))
            return 0
    print(USAGE, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
