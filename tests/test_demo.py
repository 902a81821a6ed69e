"""README command 1: the demo shows the whole lifecycle and ends with nothing left."""
import subprocess

from localaws.pool import script


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
