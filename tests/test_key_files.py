"""A key file that is not a bare key is never echoed: by condor_annex, the daemon or botocore.

Issue 18 finding 7: a key file in ``~/.aws/credentials`` format reached botocore, whose error
printed the whole file -- the secret key included -- on stderr.
"""
from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from annexd.aws import identity
from annexd.rpc import protocol
from annexd.config.knobs import KnobError
from conftest import SPOT_CONFIG

HIDDEN = f"wJalrXUtnFEMI/K7MDENG/{uuid.uuid4().hex}"


def private_file(path, text: str) -> str:
    path.write_text(text)
    os.chmod(path, 0o600)
    return str(path)


SHARED_CREDENTIALS = ("[default]\naws_access_key_id = AKIAEXAMPLELOCAL\n"
                      f"aws_secret_access_key = {HIDDEN}\n")

CASES = {
    # The whole ~/.aws/credentials file as the secret key file, then as the access key file.
    "credentials-as-secret": lambda pool, f: ["-public-key-file", pool.access_key_file,
                                              "-secret-key-file", f(SHARED_CREDENTIALS)],
    "credentials-as-access": lambda pool, f: ["-public-key-file", f(SHARED_CREDENTIALS),
                                              "-secret-key-file", pool.secret_key_file],
    # A key with a space in it, and one with a control character.
    "two-words": lambda pool, f: ["-public-key-file", pool.access_key_file,
                                  "-secret-key-file", f(f"secret {HIDDEN}\n")],
    "control-character": lambda pool, f: ["-public-key-file", pool.access_key_file,
                                          "-secret-key-file", f(f"{HIDDEN}\x07\n")],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", [["-status"], ["-yes", "-count", "1", SPOT_CONFIG]],
                         ids=["status", "create"])
def test_a_garbled_key_file_is_named_never_echoed(case, command, aws, pool, daemon, run_annex,
                                                  tmp_path):
    before = os.path.getsize(pool.log_file)
    name = tmp_path / "keyfile"
    flags = CASES[case](pool, lambda text: private_file(name, text))
    if command != ["-status"]:
        command = ["-annex-name", f"k-{uuid.uuid4().hex[:6]}", "-lease-function-arn",
                   aws.lease_arn, *command]
    result = run_annex(*flags, *command)
    with open(pool.log_file, encoding="utf-8", errors="replace") as log:
        log.seek(before)
        logged = log.read()
    secret_part = HIDDEN.split("/")[-1]
    for text in (result.stdout, result.stderr, logged):
        assert secret_part not in text
    assert result.returncode == 2, result.stderr
    assert str(name) in result.stderr
    assert "not a bare key" in result.stderr
    assert aws.all_fleets() == []


def test_the_daemon_never_echoes_garbled_keys_sent_to_it(pool, daemon):
    """A client other than condor_annex may send anything: the reply and log name the field."""
    before = os.path.getsize(pool.log_file)
    message = {"version": 1, "command": "status",
               "credentials": {"access_key_id": "AKIAEXAMPLELOCAL",
                               "secret_access_key": SHARED_CREDENTIALS}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(pool.socket_path)
        sock.sendall(protocol.encode(message))
        reply = protocol.validate_reply(protocol.receive(sock))
    assert reply["ok"] is False and reply["error"]["kind"] == "invalid-request"
    assert "credentials/secret_access_key: not a bare AWS key" in reply["error"]["message"]
    with open(pool.log_file, encoding="utf-8", errors="replace") as log:
        log.seek(before)
        assert HIDDEN.split("/")[-1] not in log.read() + json.dumps(reply)


def test_the_daemons_own_key_file_is_named_never_echoed(tmp_path):
    secret = private_file(tmp_path / "secret.key", SHARED_CREDENTIALS)
    access = private_file(tmp_path / "access.key", "AKIAEXAMPLELOCAL\n")
    with pytest.raises(KnobError) as refused:
        identity.from_key_files((access, secret))
    assert str(refused.value).startswith(f"ANNEXD_SECRET_KEY_FILE = {secret}: not a bare key")
    assert "credentials file" in str(refused.value)
    assert HIDDEN.split("/")[-1] not in str(refused.value)
