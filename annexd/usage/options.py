"""HTCondor-style command-line options: single-dash long flags matched by unique prefix.

``-public`` means ``-public-key-file`` because no other flag starts that way; ``-lease`` is
ambiguous (``-lease-duration``, ``-lease-function-arn``) and is refused with both names.
Options are data (:class:`Option`), so each command lists its own and the help text writes
itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


class UsageError(Exception):
    """The command line is wrong; the message says how."""


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]          # the first is the one shown in help
    dest: str
    metavar: str | None = None      # None: a switch that takes no value
    help: str = ""
    nargs: int = 1                  # values per use (e.g. -tag NAME VALUE takes 2)
    repeat: bool = False            # may be given again; values collect in a list
    #: The original condor_annex's names for this option, accepted as they are (exact or by
    #: unique prefix, like every name) so its users' commands and scripts keep working.
    aliases: tuple[str, ...] = ()
    #: Set for a flag of the original condor_annex that has no counterpart here: giving it is
    #: refused with this message, which names what to use instead.  Such an option is matched
    #: (so no prefix of it is taken for another flag) but never shown in help.
    refused: str = ""

    @property
    def flag(self) -> str:
        return self.names[0]

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names + self.aliases


def _match(arg: str, options: Sequence[Option]) -> Option:
    word = "-" + arg.lstrip("-")
    exact = [o for o in options if word in o.all_names]
    if exact:
        return exact[0]
    found = {o.dest: o for o in options if any(name.startswith(word) for name in o.all_names)}
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise UsageError(f"unknown option {arg}")
    names = ", ".join(sorted(o.flag for o in found.values()))
    raise UsageError(f"option {arg} is ambiguous: it could be {names}")


def parse(argv: Sequence[str], options: Sequence[Option]) -> tuple[dict[str, Any], list[str]]:
    """Return ({dest: value or True}, positional arguments).  ``-`` alone is positional."""
    values: dict[str, Any] = {}
    positionals: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "-" or not arg.startswith("-"):
            positionals.append(arg)
            continue
        option = _match(arg, options)
        if option.refused:
            raise UsageError(f"{option.flag} (the original condor_annex's) is not supported: "
                             f"{option.refused}")
        if option.metavar is None:
            values[option.dest] = True
            continue
        taken = [next(args, None) for _ in range(option.nargs)]
        if None in taken:
            raise UsageError(f"{option.flag} needs {option.metavar}")
        value = taken[0] if option.nargs == 1 else tuple(taken)
        if option.repeat:
            values.setdefault(option.dest, []).append(value)
        else:
            values[option.dest] = value
    return values, positionals


def help_text(usage: str, options: Sequence[Option]) -> str:
    width = max(len(f"{o.flag} {o.metavar or ''}") for o in options if not o.refused) + 2
    lines = [f"usage: {usage}", "", "options:"]
    for option in (o for o in options if not o.refused):
        left = f"{option.flag} {option.metavar or ''}".rstrip()
        others = option.names[1:] + option.aliases
        aliases = f" (also {', '.join(others)})" if others else ""
        lines.append(f"  {left:<{width}}{option.help}{aliases}")
    return "\n".join(lines)
