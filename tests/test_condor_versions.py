"""config.d/80annexd read by each HTCondor an admin may run: 24.0 LTS, 25.0 LTS, 25.x feature.

ANNEXD is in condor_master's built-in DaemonCore list, and how DC_DAEMON_LIST takes it off
changed between versions (see the fragment).  Each case reads the fragment with that
version's own Python bindings -- the same configuration parser the master uses, ``if version``
conditionals included -- and checks that ANNEXD joins DAEMON_LIST and what the master of that
version, applying its own DC_DAEMON_LIST rules to what the fragment set, makes of it: its
built-in DaemonCore daemons less ANNEXD where "-ANNEXD" works (25.0.13+, 25.13.2+), all of them
untouched elsewhere (issue 25 finding 9: 24.0's master warns about any list not starting with
"+"); never a warning, and a DC_DAEMON_LIST the site set is kept.

The bindings of other versions live in ``.venv-htcondor-<version>/`` (``pip install --target``,
htcondor alone), made on first use and kept; the suite's own virtualenv has the newest.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAGMENT = os.path.join(ROOT, "config.d", "80annexd")

Version = tuple[int, int, int]

#: condor_master's ``default_dc_daemon_array`` (src/condor_master.V6/master.h), 24.0 to 25.5;
#: 25.6.1 added PLACEMENTD.
BUILT_IN_DC = ["MASTER", "STARTD", "SCHEDD", "KBDD", "COLLECTOR", "NEGOTIATOR", "EVENTD",
               "VIEW_SERVER", "CONDOR_VIEW", "VIEW_COLLECTOR", "CREDD", "HAD", "REPLICATION",
               "JOB_ROUTER", "ROOSTER", "SHARED_PORT", "DEFRAG", "GANGLIAD", "ANNEXD"]


def built_in_dc(version: Version) -> set[str]:
    return set(BUILT_IN_DC) | ({"PLACEMENTD"} if version >= (25, 6, 1) else set())


def keeps_built_ins(version: Version) -> bool:
    """HTCONDOR-3845 (25.0.13 LTS, 25.13.2 feature): built-ins are always DaemonCore daemons."""
    return (25, 0, 13) <= version < (25, 1, 0) or version >= (25, 13, 2)


def effective_dc(version: Version, value: str | None) -> set[str]:
    """The DaemonCore daemons of this version's master, after ``init_daemon_list()``."""
    names = [n for n in re.split(r"[\s,]+", value or "") if n]
    if keeps_built_ins(version):
        result = built_in_dc(version)
        for name in names:
            if name.startswith("-"):
                result.discard(name[1:])
            else:
                result.add(name.lstrip("+"))
        return result
    if value is None:
        return built_in_dc(version)
    if value.startswith("+"):
        return built_in_dc(version) | {value[1:].strip()}
    return set(names)


def warnings(version: Version, value: str | None) -> int:
    """How many "expected to find X in DC_DAEMON_LIST, but it is not there" lines the master
    logs (init_daemon_list() before HTCONDOR-3845: for a list not starting with "+", each
    built-in daemon is compared with every entry, but ``found`` keeps only the comparison with
    the last entry -- so all but at most one built-in are reported, whatever the list)."""
    if keeps_built_ins(version) or value is None or value.startswith("+"):
        return 0
    names = [n for n in re.split(r"[\s,]+", value) if n]
    last = names[-1].upper() if names else ""
    return sum(1 for name in built_in_dc(version) if name != last)


READ = """
import json, re
try:
    import htcondor2 as htcondor
except ImportError:
    import htcondor
def get(knob):
    try:
        return htcondor.param[knob]
    except KeyError:
        return None
version = re.search(r"CondorVersion: (\\d+)\\.(\\d+)\\.(\\d+)", htcondor.version()).groups()
print(json.dumps({"version": [int(v) for v in version], "DAEMON_LIST": get("DAEMON_LIST"),
                  "DC_DAEMON_LIST": get("DC_DAEMON_LIST"), "ANNEXD": get("ANNEXD")}))
"""


def read_fragment(command: list[str], env: dict[str, str], tmp_path, site: str = "") -> dict:
    """What the bindings run by ``command`` make of a site config that includes the fragment
    (after the site's own ``site`` lines)."""
    config = tmp_path / "condor_config"
    config.write_text(f"BIN = /usr/bin\nDAEMON_LIST = MASTER, SCHEDD\n{site}\n"
                      f"include : {FRAGMENT}\n")
    result = subprocess.run([*command, "-c", READ], env={**env, "CONDOR_CONFIG": str(config)},
                            capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def bindings(series: str) -> tuple[list[str], dict[str, str]]:
    """An interpreter that imports htcondor ``series`` (e.g. "24.0") and nothing else."""
    target = os.path.join(ROOT, f".venv-htcondor-{series}")
    if not os.path.isdir(target):
        partial = f"{target}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", "--target", partial,
                        f"htcondor=={series}.*"], check=True, timeout=600)
        try:
            os.rename(partial, target)
        except OSError:  # another process made it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
    # -S: no site-packages, so the suite's own htcondor cannot shadow this one.
    return [sys.executable, "-S"], {**os.environ, "PYTHONPATH": target}


def check(seen: dict, expected_series: str | None) -> None:
    version = tuple(seen["version"])
    if expected_series:
        assert ".".join(map(str, version)).startswith(expected_series + "."), version
    assert re.split(r"[\s,]+", seen["DAEMON_LIST"]) == ["MASTER", "SCHEDD", "ANNEXD"]
    assert seen["ANNEXD"] == "/usr/bin/condor_annexd"
    value = seen["DC_DAEMON_LIST"]
    wanted = built_in_dc(version) - ({"ANNEXD"} if keeps_built_ins(version) else set())
    assert effective_dc(version, value) == wanted, (version, value)
    assert warnings(version, value) == 0, (version, value)
    if not keeps_built_ins(version):
        assert value is None  # left alone


#: A site's own DC_DAEMON_LIST, as each version's syntax allows adding a daemon of its own.
SITE_DC = {False: "DC_DAEMON_LIST = +MY_DC_DAEMON", True: "DC_DAEMON_LIST = MY_DC_DAEMON"}


def check_site_list_kept(command: list[str], env: dict[str, str], tmp_path) -> None:
    probe = read_fragment(command, env, tmp_path)
    version = tuple(probe["version"])
    seen = read_fragment(command, env, tmp_path, SITE_DC[keeps_built_ins(version)])
    assert "MY_DC_DAEMON" in effective_dc(version, seen["DC_DAEMON_LIST"]), seen
    assert warnings(version, seen["DC_DAEMON_LIST"]) == 0


def test_the_warning_model_is_24_0s_loop():
    """The model above against what 24.0's master logged with the old fragment's list: 18."""
    old = ("MASTER, STARTD, SCHEDD, KBDD, COLLECTOR, NEGOTIATOR, EVENTD, VIEW_SERVER, "
           "CONDOR_VIEW, VIEW_COLLECTOR, CREDD, HAD, REPLICATION, JOB_ROUTER, ROOSTER, "
           "SHARED_PORT, DEFRAG, GANGLIAD")
    assert warnings((24, 0, 24), old) == 18
    assert warnings((24, 0, 24), "+MINE") == 0 and warnings((25, 14, 1), old) == 0


@pytest.mark.parametrize("series", ["24.0", "25.0", "25.12"])
def test_fragment_takes_annexd_off_the_daemoncore_list_in_htcondor(series, tmp_path):
    """24.0 LTS (list replaces), 25.0 LTS >= 25.0.13 (-ANNEXD), 25.12 (list, PLACEMENTD)."""
    check(read_fragment(*bindings(series), tmp_path), series)
    check_site_list_kept(*bindings(series), tmp_path)


def test_fragment_takes_annexd_off_the_daemoncore_list_in_the_newest_htcondor(tmp_path):
    """The suite's own bindings: the newest release (25.13.2 or later: -ANNEXD)."""
    seen = read_fragment([sys.executable], dict(os.environ), tmp_path)
    check(seen, None)
    assert tuple(seen["version"]) >= (25, 13, 2)
    check_site_list_kept([sys.executable], dict(os.environ), tmp_path)

