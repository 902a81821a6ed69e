"""README command 1: the demo shows the whole lifecycle and ends with nothing left."""
import subprocess
import uuid

from annexd_lambda import lease
from localaws import demo
from localaws.pool import BUCKET, REGION, script


def test_demo_runs_the_whole_lifecycle():
    result = subprocess.run([script("python"), "-m", "localaws.demo", "--lease-seconds", "4",
                             "--tick-seconds", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for step in ("$ condor_annex -setup", "Setup successful",
                 "$ condor_annex -annex-name demo ", "$ condor_annex -annex-name demo-lt ",
                 "spot-fleet-launch-template.json", "lease function for demo: lease EXPIRED",
                 "lease function for demo-lt: lease EXPIRED",
                 "Lifecycle complete: nothing of either annex is left."):
        assert step in out, step
    # The last -status, after the leases ended, shows no live annex (was: both, as if live).
    last_status = out.rsplit("$ condor_annex -status", 1)[1].split("\n== ", 1)[0]
    assert "You have no annexes." in last_status, last_status
    # Both annexes, the classic one and the launch-template one, ran 3 instances each.
    assert out.count("running 3") >= 2
    assert "demo-secret-key-never-printed" not in out + result.stderr


def test_demo_last_look_sees_an_object_under_the_requests_own_key(aws, capsys):
    """The demo's last look finds what the lease function's teardown would delete: the object
    under ``config-<region>-<ClientToken>.tar.gz`` (it searched the old name-only key, and said
    "none" while the request's object existed).  Another request's object of the same annex
    name is not this request's."""
    token, other = f"demo_{uuid.uuid4()}", f"demo_{uuid.uuid4()}"
    key = lease.config_key("demo", REGION, token)
    assert key != lease.config_key("demo")
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"config")
    aws.s3.put_object(Bucket=BUCKET, Key=lease.config_key("demo", REGION, other), Body=b"x")
    left = demo.show_annex(aws.url, "demo", token, BUCKET, set())
    assert left == {"fleets": 0, "instances": 0, "rules": 0, "objects": 1}
    assert f"s3://{BUCKET}/{key}" in capsys.readouterr().out
    aws.s3.delete_object(Bucket=BUCKET, Key=key)
    assert demo.show_annex(aws.url, "demo", token, BUCKET, set())["objects"] == 0
