"""config.d/80annexd documents every knob (how each HTCondor reads it: test_condor_versions)."""
import os
import re

from annexd.config import knobref
from annexd.config import knobs
from condor_annex import userconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAGMENT = os.path.join(ROOT, "config.d", "80annexd")


def test_every_knob_the_code_reads_is_documented():
    with open(FRAGMENT, encoding="utf-8") as handle:
        documented = handle.read()
    read = set()
    for package in ("annexd", "condor_annex"):
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(directory, name), encoding="utf-8") as source:
                        read |= set(re.findall(r'"(ANNEXD?_[A-Z0-9_]+)"', source.read()))
    read -= {"ANNEXD_TEST_CRASH_AT"}  # test-only hook, documented in annexd/aws/faults.py
    missing = sorted(knob for knob in read if not re.search(rf"\b{knob}\b", documented))
    assert read and missing == []
    # ... and in the knob reference README's table is generated from (annexd.config.knobref)
    # The original condor_annex's knobs a create names as not read are not ours to list.
    assert sorted(read - knobref.names() - set(userconfig.ORIGINALS_ONLY)) == []


def test_instance_image_fragment_loads_in_htcondor(condor_config):
    condor_config(f"include : {os.path.join(ROOT, 'image', '20annex-image.config')}")
    assert re.split(r"[\s,]+", knobs.raw("DAEMON_LIST")) == ["MASTER", "STARTD"]
    assert knobs.raw("DEFAULT_MASTER_SHUTDOWN_SCRIPT") == "/usr/sbin/poweroff"
    with open(os.path.join(ROOT, "image", "condor-annex-ec2.service"), encoding="utf-8") as unit:
        text = unit.read()
    assert "Before=condor.service" in text and "Type=oneshot" in text
    assert "ExecStart=/usr/local/bin/condor_annex_ec2 -config-dir /etc/condor/config.d" in text
    with open(os.path.join(ROOT, "image", "condor-annex-lease.service"), encoding="utf-8") as unit:
        assert "condor_annex_ec2 -refresh-lease -config-dir /etc/condor/config.d" in unit.read()
    with open(os.path.join(ROOT, "image", "condor-annex-lease.timer"), encoding="utf-8") as unit:
        assert "OnUnitActiveSec=60" in unit.read()


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_config_fragment_and_readme_state_the_defaults_the_code_uses():
    """One table of defaults (annexd.config.knobs.DEFAULTS); the fragment and README agree with it."""
    with open(FRAGMENT, encoding="utf-8") as handle:
        fragment = handle.read()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        rows = [line for line in handle if line.startswith("| `ANNEX")]
    for knob, default in knobs.DEFAULTS.items():
        stated = re.findall(rf"^#?{knob} = (.*)$", fragment, re.MULTILINE)
        assert stated == [_shown(default)], (knob, stated)
        [row] = [row for row in rows if f"`{knob}`" in row.split("|")[1]]
        names = [name.strip(" `") for name in row.split("|")[1].split(",")]
        values = [value.strip(" `") for value in row.split("|")[2].split(",")]
        stated = values[names.index(knob)] if len(values) == len(names) else values[0]
        assert stated == _shown(default), (knob, row)


#: What README tells admins to look up with condor_config_val (issue 25 finding 8).
QUERIED = {"ANNEXD_LOG": "/var/log/condor/AnnexdLog",
           "ANNEXD_JOURNAL": "/var/lib/condor/spool/annexd-journal.sqlite",
           "ANNEXD_SOCKET": "/var/lock/condor/annexd.sock"}


def test_every_knob_readme_says_to_query_answers_through_condor_config_val(condor_config):
    """condor_config_val reads the configuration, not the daemon's built-in defaults: each
    knob README has admins query is set by the fragment (htcondor2's param reads config as
    condor_config_val does)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        queried = set(re.findall(r"condor_config_val ([A-Z][A-Z0-9_]+)", handle.read()))
    assert {"ANNEXD_LOG", "ANNEXD_JOURNAL"} <= queried
    condor_config("LOG = /var/log/condor\nSPOOL = /var/lib/condor/spool\n"
                  "LOCK = /var/lock/condor\nBIN = /usr/bin\nDAEMON_LIST = MASTER, SCHEDD\n"
                  f"include : {FRAGMENT}")
    import htcondor2
    for knob in queried:
        assert htcondor2.param.get(knob), f"condor_config_val {knob} would print nothing"
    for knob, value in QUERIED.items():
        assert htcondor2.param[knob] == value
        assert knobs.path(knob) == value  # the daemon uses what condor_config_val says


def test_readme_install_says_the_price_tables_date_and_uninstalls_what_install_made():
    """Issue 25 finding 10: the shipped prices' date is said where admins install; the
    uninstall removes the /usr/local/bin symlink the install made; the bindings are pinned
    to the site's HTCondor series."""
    from annexd.money import costs
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    install = readme[readme.index("## Install at a site"):readme.index("### AWS permissions")]
    uninstall = readme[readme.index("### Uninstall"):]
    assert f"dated {costs.price_table()['date']}" in install
    [link] = re.findall(r"ln -s \S+ (/usr/local/bin/\S+)", install)
    assert f"rm -f {link}" in uninstall
    assert '"htcondor==$SERIES.*"' in install and "condor_version" in install
    # step order: the daemon's identity (its policy names the bucket) after the setup
    assert install.index("**Set up each region once") < install.index(
        "**Give the daemon an AWS identity of its own**")
