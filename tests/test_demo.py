"""README command 1: the demo shows the whole lifecycle and ends with nothing left."""
import subprocess

from localaws.pool import script


def test_demo_runs_the_whole_lifecycle():
    result = subprocess.run([script("python"), "-m", "localaws.demo", "--lease-seconds", "4",
                             "--tick-seconds", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for step in ("$ condor_annex -setup", "Setup successful",
                 "$ condor_annex -annex-name demo", "running 3", "lease EXPIRED",
                 "Lifecycle complete: nothing of the annex is left."):
        assert step in out, step
    assert "demo-secret-key-never-printed" not in out + result.stderr
