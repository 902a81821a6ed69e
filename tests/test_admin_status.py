"""Root and the daemon's own user list every live annex without AWS keys, as condor_q shows
every job: from the journal, with instance counts from the daemon's own identity where it may
look, else "unknown".  Other users still need their keys, and see only their own annexes
(issue 17, finding 9)."""
from __future__ import annotations

import json

from localaws.pool import AnnexDaemon

from test_daemon_boundary import as_other_user, create_message

ALICE, BOB = 54321, 54322
DAEMON_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def test_root_lists_every_annex_without_aws_keys(aws, shared_pool):
    """Was: `condor_annex -status` as root with no key files: "error: no AWS credentials",
    exit 4."""
    with AnnexDaemon(shared_pool):  # no identity of its own
        made = as_other_user(shared_pool.socket_path, create_message("alices"), uid=ALICE)
        assert made["ok"], made
        shown = shared_pool.condor_annex("-status", "-json", keys=False)
        assert shown.returncode == 0, shown.stderr
        [annex] = json.loads(shown.stdout)
        assert (annex["name"], annex["owner_uid"]) == ("alices", ALICE)
        assert annex["instances"] is None and annex["lease"] == "unknown"  # not a false
        assert "instance counts and leases are unknown for alices" in shown.stderr  # "none"
        table = shared_pool.condor_annex("-status", keys=False)
        assert table.returncode == 0, table.stderr
        [row] = [line for line in table.stdout.splitlines() if line.startswith("alices")]
        assert "unknown" in row.split()
        ads = shared_pool.condor_annex("-status", "-classad", keys=False)
        assert 'AnnexName = "alices"' in ads.stdout and "TotalInstances" not in ads.stdout
        theirs = as_other_user(shared_pool.socket_path, {"version": 1, "command": "status"},
                               uid=BOB)
        assert theirs["ok"] is False
        assert "no AWS credentials: run condor_annex -setup" in theirs["error"]["message"]
    with AnnexDaemon(shared_pool, DAEMON_CREDENTIALS):  # now it has one: counts
        shown = shared_pool.condor_annex("-status", "-json", keys=False)
        assert shown.returncode == 0, shown.stderr
        [annex] = json.loads(shown.stdout)
        assert annex["instances"] == {"running": 1} and annex["lease"] == "enforced"
        assert "unknown" not in shown.stderr
        creds = create_message("x")["credentials"]
        alices = as_other_user(shared_pool.socket_path,
                               {"version": 1, "command": "status", "credentials": creds},
                               uid=ALICE)
        assert [a["name"] for a in alices["result"]["annexes"]] == ["alices"]
        bobs = as_other_user(shared_pool.socket_path,
                             {"version": 1, "command": "status", "credentials": creds},
                             uid=BOB)
        assert bobs["ok"] and bobs["result"]["annexes"] == []
