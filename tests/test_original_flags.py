"""Issue 19 finding 6: the original condor_annex's users -- its flag names, its user data, its
-classads (old ClassAd syntax, its attributes), instance IDs in -status, -setup FROM INSTANCE."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess

import classad2
import pytest

from condor_annex.cli import OPTIONS
from annexd.usage.options import parse
from localaws import fixtures
from localaws.pool import AnnexDaemon, LocalPool, run_program, script

from conftest import LAUNCH_TEMPLATE_CONFIG, SECRET, SPOT_CONFIG
from test_identity import with_identity_files

#: The original's flag -> the option it is here.
ORIGINAL_FLAGS = {
    "-aws-access-key-file": "access_key_file",
    "-aws-secret-key-file": "secret_key_file",
    "-aws-spot-fleet-config-file": "config_file",
    "-aws-user-data": "user_data",
    "-aws-user-data-file": "user_data_file",
    "-classads": "classad",
}
USER_DATA = "#!/bin/sh\necho hello from the original's -aws-user-data\n"


@pytest.mark.parametrize("flag, dest", ORIGINAL_FLAGS.items())
def test_the_originals_flag_names_are_accepted(flag, dest):
    values, _ = parse([flag] + ([] if dest == "classad" else ["x"]), tuple(OPTIONS.values()))
    assert list(values) == [dest]


def test_a_create_in_the_originals_words(aws, pool, daemon, run_annex):
    created = run_annex("-annex-name", "old-words", "-aws-access-key-file", pool.access_key_file,
                        "-aws-secret-key-file", pool.secret_key_file, "-slots", "2",
                        "-duration", "0.5", "-lease-function-arn", aws.lease_arn,
                        "-aws-spot-fleet-config-file", SPOT_CONFIG)
    assert created.returncode == 0, created.stderr
    assert len(aws.annex_resources("old-words")["fleets"]) == 1
    both = run_annex("-aws-spot-fleet-config-file", SPOT_CONFIG, SPOT_CONFIG)
    assert both.returncode == 1 and "give the fleet config once" in both.stderr


def test_status_classads_are_old_syntax_with_the_originals_attributes(aws, run_annex,
                                                                      with_keys):
    created = run_annex("-annex-name", "ads", "-count", "2", "-lease-duration", "600",
                        "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    assert created.returncode == 0, created.stderr
    instances = sorted(aws.annex_resources("ads")["instances"])
    shown = run_annex("-status", "-classads", *with_keys)
    assert shown.returncode == 0, shown.stderr
    assert 'AnnexID = "ads"' in shown.stdout.splitlines()
    ads = {ad["AnnexID"]: ad for ad in classad2.parseAds(shown.stdout, classad2.ParserType.Old)}
    ad = ads["ads"]
    assert ad["MyType"] == "Annex" and ad["AnnexID"] == "ads" and ad["TotalInstances"] == 2
    assert ad["NumInstancesRunning"] == 2
    # Issue 25 finding 5: as the original printed them, a ClassAd list of the IDs, and the
    # Name "ID [md5 of the access key file]" (StatusReply.cpp).
    assert list(ad["RunningInstancesList"]) == instances
    assert '{ "' in shown.stdout
    with open(with_keys[1], "rb") as handle:
        digest = hashlib.md5(handle.read()).hexdigest()
    assert ad["Name"] == f"ads [{digest}]"
    assert ad["Owner"] and ad["Region"] == "us-east-1" and ad["LeaseExpiration"] > 0
    # -long lists the instance IDs under the table.
    long = run_annex("-status", "-long", *with_keys)
    assert long.returncode == 0 and "Instances of ads (us-east-1):" in long.stdout
    assert all(instance in long.stdout for instance in instances)


def test_user_data_reaches_on_demand_and_fleet_instances(aws, run_annex, with_keys, tmp_path):
    encoded = base64.b64encode(USER_DATA.encode()).decode()
    on_demand = run_annex("-annex-name", "ud-odi", "-count", "1", "-lease-duration", "600",
                          "-aws-on-demand-ami-id", fixtures.WORKER_IMAGE,
                          "-aws-on-demand-instance-type", "m5.large", "-lease-function-arn",
                          aws.lease_arn, "-aws-user-data", USER_DATA, *with_keys)
    assert on_demand.returncode == 0, on_demand.stderr
    [instance] = aws.annex_resources("ud-odi")["instances"]
    attribute = aws.ec2.describe_instance_attribute(InstanceId=instance, Attribute="userData")
    assert attribute["UserData"]["Value"] == encoded
    data_file = tmp_path / "user-data.sh"
    data_file.write_text(USER_DATA)
    fleet = run_annex("-annex-name", "ud-sfr", "-lease-duration", "600", "-lease-function-arn",
                      aws.lease_arn, "-aws-user-data-file", str(data_file), *with_keys,
                      SPOT_CONFIG)
    assert fleet.returncode == 0, fleet.stderr
    [config] = [f["SpotFleetRequestConfig"] for f in aws.all_fleets()]
    assert [spec["UserData"] for spec in config["LaunchSpecifications"]] == [encoded]


def test_user_data_with_a_launch_template_is_refused_with_the_reason(aws, run_annex, with_keys):
    refused = run_annex("-annex-name", "ud-lt", "-lease-function-arn", aws.lease_arn,
                        "-aws-user-data", USER_DATA, *with_keys, LAUNCH_TEMPLATE_CONFIG)
    assert refused.returncode == 4
    assert "from the template (EC2 has no override for it); put it in the template" \
        in refused.stderr
    assert aws.all_fleets() == []


@pytest.fixture
def instance_pool(empty_aws, moto_server, tmp_path):
    """A pool whose daemon has an AWS identity of its own (as from an instance role)."""
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, bucket=None)


def annex(pool: LocalPool, *args: str) -> subprocess.CompletedProcess:
    return run_program([script("condor_annex"), *args], pool.env(), timeout=120)


def test_setup_from_instance_is_refused_unless_the_admin_lends_the_identity(instance_pool):
    with AnnexDaemon(with_identity_files(instance_pool)):
        refused = annex(instance_pool, "-setup", "FROM", "INSTANCE")
    assert refused.returncode == 4
    assert "FROM INSTANCE" in refused.stderr and \
        "ANNEXD_ALLOW_DAEMON_CREDENTIALS" in refused.stderr
    assert not os.path.exists(instance_pool.user_config_file)  # nothing was set up


def test_setup_from_instance_uses_the_daemons_identity(empty_aws, instance_pool):
    with_identity_files(instance_pool).add_knobs("ANNEXD_ALLOW_DAEMON_CREDENTIALS = true\n")
    with AnnexDaemon(instance_pool):
        set_up = annex(instance_pool, "-setup", "FROM", "INSTANCE")
        assert set_up.returncode == 0, set_up.stderr
        with open(instance_pool.user_config_file, encoding="utf-8") as handle:
            written = handle.read()
        assert "us_east_1.ANNEX_DEFAULT_ACCESS_KEY_FILE = FROM INSTANCE" in written
        checked = annex(instance_pool, "-check-setup")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        listed = annex(instance_pool, "-status", "-json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == []
