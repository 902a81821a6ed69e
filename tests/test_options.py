"""HTCondor-style flag parsing: unique prefixes, aliases, values, errors."""
import pytest

from condor_annex.cli import OPTIONS as TABLE, CreateAnnex, usage_text
from condor_annex.inputs import hours, whole_number
from annexd.usage.options import UsageError, parse

OPTIONS = tuple(TABLE.values())


def test_unique_prefixes_select_the_full_flag():
    values, positionals = parse(["-public", "a", "-secret", "s", "-annex", "n", "c.json"], OPTIONS)
    assert values == {"access_key_file": "a", "secret_key_file": "s", "annex_name": "n"}
    assert positionals == ["c.json"]


def test_aliases_and_double_dash_work():
    values, _ = parse(["-access-key-file", "a", "--private-key-file", "s"], OPTIONS)
    assert values == {"access_key_file": "a", "secret_key_file": "s"}


def test_values_may_look_like_flags():
    values, _ = parse(["-lease-duration", "-5"], OPTIONS)
    assert values == {"lease_duration": "-5"}


def test_dash_alone_is_the_stdin_positional():
    assert parse(["-"], OPTIONS) == ({}, ["-"])


@pytest.mark.parametrize("argv, message", [
    (["-lease", "5"], "option -lease is ambiguous: it could be -lease-duration, -lease-function-arn"),
    (["-bogus"], "unknown option -bogus"),
    (["-count"], "-count needs N"),
])
def test_errors_name_the_problem(argv, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(argv, OPTIONS)


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "abc", "", " 5", "5 ", "1_000", "\u0661\u0662",
                                  "12\n", "10001", "9" * 400, "+5"])
def test_whole_numbers_are_ascii_digits_within_bounds(text):
    with pytest.raises(UsageError, match="-count: expected a positive whole number of instances"):
        whole_number("-count", text, "instances", 10_000)


def test_whole_number_accepts():
    assert whole_number("-count", "20", "instances", 10_000) == 20


@pytest.mark.parametrize("text", ["inf", "nan", "-1", "0", "1e400", "1e3", "", "0.0000001",
                                  "99999999", "\u0661"])
def test_hours_are_finite_ascii_decimals_within_bounds(text):
    with pytest.raises(UsageError, match="-duration"):
        hours("-duration", text, 366 * 86400)


def test_hours_accepts():
    assert hours("-duration", "1.5", 366 * 86400) == 5400 and hours("-duration", ".5", 9999) == 1800


def test_help_lists_every_flag_and_alias():
    text = usage_text()
    assert CreateAnnex.usage in text
    for option in OPTIONS:
        for name in option.names:
            assert (name in text) == (not option.refused)  # refused: README lists them


class _Terminal:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_a_busy_daemon_is_waited_out_and_said_so_only_at_a_terminal(monkeypatch, tty):
    from condor_annex import cli

    terminal = _Terminal(tty)
    monkeypatch.setattr(cli.sys, "stderr", terminal)
    cli._say_waiting("condor_annexd is busy: 64 clients are connected (ANNEXD_MAX_CLIENTS); "
                     "try again shortly.")
    assert ("waiting (up to 300 s)" in terminal.text) is tty
