"""HTCondor-style flag parsing: unique prefixes, aliases, values, errors."""
import pytest

from condor_annex.cli import OPTIONS as TABLE, CreateAnnex, usage_text
from condor_annex.options import UsageError, parse, positive_int

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


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "abc", "", " 5", "5 "])
def test_positive_int_rejects(text):
    with pytest.raises(UsageError, match="-count: expected a positive whole number of instances"):
        positive_int("-count", text, "instances")


def test_positive_int_accepts():
    assert positive_int("-count", "20", "instances") == 20


def test_help_lists_every_flag_and_alias():
    text = usage_text()
    assert CreateAnnex.usage in text
    for option in OPTIONS:
        for name in option.names:
            assert name in text
