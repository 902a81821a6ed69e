"""localaws.moto_main: the emulator's one listing of moto's services answers as moto's own."""
from __future__ import annotations

import json
import subprocess
import sys

COMPARE = """
import json
from moto import backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from localaws import moto_main
hosts = ["ec2", "s3", "events", "sts", "moto_api", "ec2.us-east-1.amazonaws.com", "nothing"]
before = list(backends.list_of_moto_modules())
dispatch = DomainDispatcherApplication(create_backend_app)
routed_before = [dispatch.get_backend_for_host(host) for host in hosts]
moto_main.listed_once()
print(json.dumps([before, list(backends.list_of_moto_modules()),
                  list(backends.list_of_moto_modules()), routed_before,
                  [dispatch.get_backend_for_host(host) for host in hosts]]))
"""


def test_the_listing_taken_once_is_motos_own_and_routes_the_same():
    before, after, again, routed_before, routed_after = json.loads(subprocess.run(
        [sys.executable, "-c", COMPARE], check=True, capture_output=True, text=True).stdout)
    assert before == after == again
    assert {"ec2", "events", "s3", "awslambda", "iam", "sts"} <= set(before)
    assert routed_before == routed_after
    assert routed_after[:4] == ["ec2", "s3", "events", "sts"] and routed_after[-1] is None
