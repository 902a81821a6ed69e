"""Knobs come from a real HTCondor configuration through htcondor2, parsed by us."""
import pytest

from annexd.config import knobs


def test_defaults_come_from_the_macros(condor_config, tmp_path):
    condor_config("")
    settings = knobs.DaemonSettings.load()
    assert settings.socket_path == f"{tmp_path}/lock/annexd.sock"
    assert settings.journal_path == f"{tmp_path}/spool/annexd-journal.sqlite"
    assert settings.region == "us-east-1"
    assert settings.lease_rate_minutes == 1 and settings.allow_daemon_credentials is False
    client = knobs.ClientSettings.load()
    assert client.socket_path == settings.socket_path
    assert client.lease_duration == 3000  # HTCondor's own default for the knob


def test_values_and_region_prefixed_knobs(condor_config):
    condor_config("\n".join([
        "ANNEXD_SOCKET = /run/annex/sock",
        "ANNEX_DEFAULT_AWS_REGION = eu-west-1",
        "ANNEX_DEFAULT_S3_BUCKET = plain-bucket",
        "eu_west_1.ANNEX_DEFAULT_S3_BUCKET = regional-bucket",
        "ANNEX_DEFAULT_EC2_URL = http://127.0.0.1:5000",
        "ANNEXD_ALLOW_DAEMON_CREDENTIALS = True",
        "ANNEXD_LEASE_RATE_MINUTES = 1",
    ]))
    settings = knobs.DaemonSettings.load()
    assert settings.socket_path == "/run/annex/sock"
    assert settings.region == "eu-west-1"
    assert settings.home.bucket == "regional-bucket"
    assert settings.home.endpoints["ec2"] == "http://127.0.0.1:5000"
    # HTCondor's built-in us-east-1 URLs must not be used for another region.
    assert settings.home.endpoints["events"] is None
    assert settings.home.endpoints["lambda"] is None
    assert settings.for_region("us-east-1").bucket == "plain-bucket"
    with pytest.raises(knobs.KnobError, match="not an AWS region name"):
        settings.for_region("mars-1")
    assert settings.allow_daemon_credentials is True and settings.lease_rate_minutes == 1


def test_builtin_endpoint_defaults_apply_in_their_own_region(condor_config):
    condor_config("")
    assert knobs.DaemonSettings.load().home.endpoints["ec2"] == \
        "https://ec2.us-east-1.amazonaws.com"


@pytest.mark.parametrize("line, message", [
    ("ANNEXD_LEASE_RATE_MINUTES = soon", "ANNEXD_LEASE_RATE_MINUTES = 'soon': expected a whole number"),
    ("ANNEXD_AWS_MAX_ATTEMPTS = 0", "ANNEXD_AWS_MAX_ATTEMPTS = '0': must be greater than zero"),
    ("ANNEXD_ALLOW_DAEMON_CREDENTIALS = maybe", "expected true or false"),
    ("ANNEX_SETUP_SERVICE_ROLE_ARN = HTCondorAnnex-SetupRole",
     "ANNEX_SETUP_SERVICE_ROLE_ARN = 'HTCondorAnnex-SetupRole': not an IAM role ARN"),
])
def test_malformed_knobs_are_named(condor_config, line, message):
    condor_config(line)
    with pytest.raises(knobs.KnobError, match=message):
        knobs.DaemonSettings.load()


def test_region_local_name():
    assert knobs.region_local_name("us-east-1") == "us_east_1"
