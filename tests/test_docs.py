"""Manual pages, -help, -version and README's generated reference: one source each, no drift.

condor_annex(1) and condor_annexd(8) are rendered from the tables the programs parse their
command lines with (condor_annex.manual); the shipped pages must be that rendering, and
`man -l` must format them cleanly.  README's knob, flag and exit-status tables must be what
the generators print, README must open with the two commands, and no step may send a reader
into a .py file.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import metadata

import pytest

from annexd.process import about as daemon_about
from annexd.config import knobref
from annexd.usage import manpage
from condor_annex import cli, manual
from localaws.pool import script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = manual.pages()
PROGRAMS = {page.name: page for page in PAGES}


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return handle.read()


def _flat(text: str) -> str:
    """Rendered text with typographic dashes and line breaks undone, for comparisons."""
    text = text.replace("\u2010", "-").replace("\u2212", "-").replace("\u00ad", "")
    return re.sub(r"\s+", " ", text)


def _render(path: str) -> subprocess.CompletedProcess:
    """Format a page as a reader's `man` would; groff alone where man-db is missing."""
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8", MAN_KEEP_FORMATTING="")
    if shutil.which("man"):
        command = ["man", "--warnings=all", "-l", path]
    elif shutil.which("groff"):
        command = ["groff", "-man", "-ww", "-Tutf8", "-P-cbou", path]
    else:
        pytest.fail("neither man (man-db) nor groff is installed: apt-get install -y man-db")
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_shipped_page_is_the_generators_output(name):
    page = PROGRAMS[name]
    with open(os.path.join(manual.MAN_DIR, page.path), encoding="utf-8") as shipped:
        assert shipped.read() == manpage.roff(page), \
            f"run: python -m condor_annex.manual -write condor_annex/man"


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_man_renders_the_page_with_every_flag_and_exit_status(name):
    page = PROGRAMS[name]
    rendered = _render(os.path.join(manual.MAN_DIR, page.path))
    assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr
    text = _flat(rendered.stdout)
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"):
        assert re.search(rf"^{heading}$", rendered.stdout, re.MULTILINE), heading
    assert f"{name} - {_flat(page.summary)}" in text
    for usage in page.usage:
        assert _flat(usage) in text
    for option in page.options:
        for flag in option.names:
            assert flag in text
        assert _flat(option.help) in text
    for code, meaning in page.exit_status:
        assert f"{code} {_flat(meaning)}" in text


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_help_is_the_same_source_as_the_page(name):
    """`-help` of the installed program prints exactly the help of its page: every flag, its
    text, the usage lines and exit statuses the manual page shows.  (condor_annexd -help was
    an argparse error.)"""
    result = subprocess.run([script(name), "-help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == manpage.help_text(PROGRAMS[name]) + "\n"
    text = _flat(result.stdout)
    for option in PROGRAMS[name].options:
        assert _flat(option.help) in text and option.flag in text
    for code, meaning in PROGRAMS[name].exit_status:
        assert f"{code} {_flat(meaning)}" in text


def test_the_pages_are_built_from_the_tables_the_programs_parse_with():
    # The flags it accepts; the original's it refuses are README's "Coming from condor_annex".
    assert PROGRAMS["condor_annex"].options == tuple(o for o in cli.OPTIONS.values()
                                                     if not o.refused)
    assert {o.flag for o in cli.ORIGINAL_ONLY} == {o.flag for o in cli.OPTIONS.values()
                                                   if o.refused}
    assert PROGRAMS["condor_annex"].usage == tuple(c.usage for c in cli.COMMANDS)
    assert PROGRAMS["condor_annexd"].options is daemon_about.OPTIONS


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_version_is_condor_version_style_with_the_package_version(name):
    result = subprocess.run([script(name), "-version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ours, bindings = metadata.version("condor-annexd"), metadata.version("htcondor")
    assert lines[0] == (f"$CondorAnnexVersion: {ours} PackageID: condor-annexd-{ours} "
                        f"Program: {name} $")
    assert lines[1].startswith(f"$CondorVersion: {bindings} ") and lines[1].endswith(" $")
    assert re.fullmatch(r"\$CondorPlatform: \S+ Python-[\d.]+ \$", lines[2])


def test_daemon_refuses_an_unknown_flag_as_a_configuration_error():
    """Under condor_master a bad ANNEXD_ARGS must not be restarted forever: exit 99."""
    result = subprocess.run([script("condor_annexd"), "-no-such-flag"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == daemon_about.EXIT_NO_RESTART
    assert "unknown option -no-such-flag" in result.stderr
    assert "condor_annexd -help" in result.stderr


def test_write_installs_both_pages_in_a_manpath_directory(tmp_path):
    written = manual.write(str(tmp_path))
    assert sorted(os.path.relpath(path, tmp_path) for path in written) == \
        ["man1/condor_annex.1", "man8/condor_annexd.8"]
    for page in PAGES:
        with open(tmp_path / page.path, encoding="utf-8") as handle:
            assert handle.read() == manpage.roff(page)


# --- README -----------------------------------------------------------------------------------

def _generated_block(readme: str, name: str) -> str:
    found = re.findall(rf"<!-- BEGIN {re.escape(name)}: (.*?) -->\n(.*?)<!-- END {re.escape(name)} -->",
                       readme, re.DOTALL)
    assert len(found) == 1, f"README needs exactly one block named {name!r}"
    return found[0][1]


def test_readme_knob_table_is_the_defaults_table():
    readme = _readme()
    assert _generated_block(readme, "knobs") == knobref.markdown(), \
        "run: python -m annexd.config.knobref -markdown, and paste it between the knobs markers"


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_readme_flag_and_exit_status_tables_are_the_programs_own(name):
    readme, page = _readme(), PROGRAMS[name]
    assert _generated_block(readme, f"{name} flags") == manpage.markdown_options(page)
    assert _generated_block(readme, f"{name} exit status") == manpage.markdown_exit_status(page)


def test_readme_generator_commands_print_the_tables(tmp_path):
    readme = _readme()
    for name in ("knobs", *(f"{p} {what}" for p in PROGRAMS for what in ("flags", "exit status"))):
        command = re.search(rf"<!-- BEGIN {re.escape(name)}: (.*?) -->", readme).group(1)
        argv = command.split()
        assert argv[:2] == ["python", "-m"], command
        result = subprocess.run([script("python"), *argv[1:]], capture_output=True, text=True,
                                cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == _generated_block(readme, name)


def test_readme_opens_with_the_demo_and_test_commands():
    assert _readme().startswith(
        "# condor-annexd\n\n```\n"
        "bash scripts/dev.sh demo    # whole life of a leased annex on the embedded local AWS "
        "emulator (no account needed)\n"
        "bash scripts/dev.sh test    # the full test suite (what CI runs: .ci/run)\n```\n")


def test_readme_sections_come_in_the_order_an_admin_needs_them():
    headings = re.findall(r"^## (.+)$", _readme(), re.MULTILINE)
    wanted = ["What it is", "Install at a site", "Setup", "First annex", "Operating",
              "Reference", "Coming from condor_annex", "Troubleshooting",
              "Upgrade and uninstall"]
    assert [h for h in headings if h in wanted] == wanted, headings


def test_no_readme_step_needs_a_python_source_file():
    readme = _readme()
    assert re.findall(r"[\w./-]+\.py\b", readme) == []
    assert "annexd.config.knobs" not in readme and "DEFAULTS" not in readme
    for page in ("docs/design.md", "docs/testing.md", "docs/benchmarks.md"):
        assert page in readme and os.path.isfile(os.path.join(ROOT, page)), page


def test_readme_says_how_to_make_the_spot_fleet_role():
    readme = _readme()
    for needed in ("IamFleetRole", "aws-ec2-spot-fleet-tagging-role",
                   "AmazonEC2SpotFleetTaggingRole", "spotfleet.amazonaws.com", "iam:PassRole"):
        assert needed in readme, needed


def test_readme_refresh_rewrites_stale_tables(tmp_path):
    """`python -m condor_annex.manual -readme README.md` is how the tables are kept current."""
    readme = _readme()
    stale = re.sub(r"(<!-- BEGIN (.*?): .*? -->\n).*?(<!-- END \2 -->)", r"\1| stale |\n\3",
                   readme, flags=re.DOTALL)
    assert stale != readme
    path = tmp_path / "README.md"
    path.write_text(stale, encoding="utf-8")
    result = subprocess.run([script("python"), "-m", "condor_annex.manual", "-readme", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert path.read_text(encoding="utf-8") == readme


def test_daemon_page_lists_every_knob_of_the_reference():
    rendered = _render(os.path.join(manual.MAN_DIR, PROGRAMS["condor_annexd"].path))
    section = rendered.stdout.split("\nCONFIGURATION\n")[1].split("\nFILES\n")[0]
    assert [knob.name for knob in knobref.KNOBS] == \
        re.findall(r"^       ([A-Z][A-Z0-9_]+)\b", section, re.MULTILINE)


def test_every_exit_status_condor_annex_can_return_is_documented():
    """A new EXIT_* in condor_annex.command (or a reply kind's code) must get a line in
    condor_annex.about.EXIT_STATUS, and so in -help, the manual page and README."""
    from condor_annex import command
    codes = {value for name, value in vars(command).items()
             if name.startswith("EXIT_") and isinstance(value, int)}
    codes |= set(command.EXIT_CODES.values())
    documented = [code for code, _ in PROGRAMS["condor_annex"].exit_status]
    assert sorted(codes) == sorted(set(documented)) and len(documented) == len(set(documented))
