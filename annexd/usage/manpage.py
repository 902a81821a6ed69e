"""Manual pages and ``-help`` from one source, so the two cannot drift.

A program describes itself once, as a :class:`Page`: its usage lines and its :class:`Option`
table (the very objects its command line is parsed with), its exit statuses and some prose.
``-help`` prints :func:`help_text` of that page; :func:`roff` renders it as a manual page;
:func:`markdown_options` and :func:`markdown_exit_status` render README's reference tables.
Both programs use it (condor_annex and condor_annexd), so it lives in the package both
depend on; :mod:`condor_annex.manual` writes the two pages and README's tables.
Standard library only: ``-help`` must start fast.
"""
from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from typing import Sequence

from annexd.usage.options import Option, help_text as options_help

#: A paragraph, or a tagged paragraph ("term", "what it means") shown as a hanging list item.
Paragraph = str | tuple[str, str]


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: tuple[Paragraph, ...]


@dataclass(frozen=True)
class Page:
    """Everything a program says about itself, in ``-help`` and in its manual page."""

    name: str
    section: int
    summary: str                                  # the NAME line, after the dash
    usage: tuple[str, ...]                        # synopsis lines, as -help prints them
    options: tuple[Option, ...]
    exit_status: tuple[tuple[int, str], ...]
    description: tuple[Paragraph, ...]
    sections: tuple[Section, ...] = ()            # after OPTIONS and EXIT STATUS
    see_also: tuple[str, ...] = field(default=())

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.section}"

    @property
    def path(self) -> str:
        """Where the page lives inside a MANPATH directory."""
        return os.path.join(f"man{self.section}", self.filename)


def help_text(page: Page) -> str:
    """``-help``: usage, options and exit statuses, from the same data as the manual page."""
    width = max(len(str(code)) for code, _ in page.exit_status)
    statuses = [textwrap.fill(meaning, 92, initial_indent=f"  {code:>{width}}  ",
                              subsequent_indent=" " * (width + 4))
                for code, meaning in page.exit_status]
    return "\n".join([
        options_help("\n       ".join(page.usage), page.options), "",
        "exit status:", *statuses, "",
        f"The manual page {page.name}({page.section}) says more."])


# --- roff -----------------------------------------------------------------------------------

def _escape(text: str) -> str:
    """Plain text as roff: backslashes and dashes escaped (a flag's dash must stay a hyphen-
    minus so it can be searched for and copied), no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.split("\n"))


def _option_tag(option: Option) -> str:
    value = f" \\fI{_escape(option.metavar)}\\fR" if option.metavar else ""
    return ", ".join(f"\\fB{_escape(name)}\\fR{value}" for name in option.names)


def _paragraphs(paragraphs: Sequence[Paragraph]) -> list[str]:
    """A section's body; its first plain paragraph needs no .PP (it follows .SH)."""
    lines: list[str] = []
    for paragraph in paragraphs:
        if isinstance(paragraph, tuple):
            term, text = paragraph
            lines += [".TP", f"\\fB{_escape(term)}\\fR", _escape(text)]
        else:
            lines += [".PP", _escape(paragraph)]
    return lines[1:] if lines[:1] == [".PP"] else lines


def roff(page: Page) -> str:
    """The manual page, in the man(7) macros that man-db, mandoc and groff all read."""
    lines = [
        f'.TH {page.name.upper()} {page.section} "" "condor-annexd" "HTCondor annex"',
        ".nh", ".ad l",  # no hyphenation or justification: knob and flag names stay whole
        ".SH NAME", f"{_escape(page.name)} \\- {_escape(page.summary)}",
        ".SH SYNOPSIS"]
    for usage in page.usage:  # filled, continuation lines indented
        lines += [".PP", ".in +4n", ".ti -4n", _escape(usage), ".in"]
    lines += [".SH DESCRIPTION", *_paragraphs(page.description)]
    lines += [".SH OPTIONS"]
    for option in page.options:
        lines += [".TP", _option_tag(option), _escape(option.help)]
    lines += [".SH EXIT STATUS"]
    lines += _paragraphs([(str(code), meaning) for code, meaning in page.exit_status])
    for section in page.sections:
        lines += [f".SH {_escape(section.title.upper())}", *_paragraphs(section.paragraphs)]
    if page.see_also:
        lines += [".SH SEE ALSO", _escape(", ".join(page.see_also))]
    return "\n".join(lines) + "\n"


# --- README tables --------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_options(page: Page) -> str:
    rows = ["| flag | meaning |", "|---|---|"]
    for option in page.options:
        names = " ".join(f"`{name}{' ' + option.metavar if option.metavar else ''}`"
                         for name in option.names)
        rows.append(f"| {_cell(names)} | {_cell(option.help)} |")
    return "\n".join(rows) + "\n"


def markdown_exit_status(page: Page) -> str:
    rows = ["| exit | meaning |", "|---|---|"]
    rows += [f"| {code} | {_cell(meaning)} |" for code, meaning in page.exit_status]
    return "\n".join(rows) + "\n"


