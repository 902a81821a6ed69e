"""Each annex gets its own IDTOKEN, minted by the daemon; no annex gets the pool password.

The tokens are checked with an implementation of HTCondor's algorithm that shares nothing
with the daemon's: PyJWT for the JWT, ``cryptography``'s HKDF for the key (see
../shared/reference/htcondor-idtokens.md).  No collector runs here, so this is as far as the
emulator can prove them.
"""
from __future__ import annotations

import io
import json
import os
import pwd
import sqlite3
import subprocess
import tarfile
import time

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from annexd.instance_config import idtoken
from annexd.config import knobs
from annexd.config.knobs import KnobError
from conftest import SECRET, SPOT_CONFIG
from localaws.pool import BUCKET, AnnexDaemon, LocalPool, run_program, script

TRUST_DOMAIN = "pool.example.org"
SCOPE = "condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER"


@pytest.fixture(scope="module")
def pool(moto_server, tmp_path_factory) -> LocalPool:
    """The suite's pool, with a trust domain of its own (HTCondor's default is the host's)."""
    return LocalPool(str(tmp_path_factory.mktemp("pool"))).write(
        moto_server.url, secret=SECRET, extra=f"TRUST_DOMAIN = {TRUST_DOMAIN}")


# -- an independent verifier -------------------------------------------------------------

def htcondor_jwt_key(key_file: str, key_id: str) -> bytes:
    with open(key_file, "rb") as handle:
        scrambled = handle.read()
    secret = bytes(byte ^ (0xDE, 0xAD, 0xBE, 0xEF)[i % 4] for i, byte in enumerate(scrambled))
    if key_id == "POOL":
        secret += secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"htcondor",
                info=b"master jwt").derive(secret)


def verified_claims(token: str, key_file: str, key_id: str = "POOL",
                    issuer: str = TRUST_DOMAIN) -> dict:
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": key_id}
    return jwt.decode(token, htcondor_jwt_key(key_file, key_id), algorithms=["HS256"],
                      issuer=issuer,
                      options={"require": ["iss", "sub", "iat", "exp", "jti", "scope"]})


def tarball_of(aws, name: str) -> dict[str, bytes]:
    body = aws.s3.get_object(Bucket=BUCKET, Key=aws.config_key(name))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return {member.name: archive.extractfile(member).read() if member.isfile() else b""
                for member in archive.getmembers()}


def create(aws, run, name: str, *flags: str) -> subprocess.CompletedProcess:
    return run("-annex-name", name, "-lease-duration", "3600", "-count", "1",
               "-lease-function-arn", aws.lease_arn, *flags, SPOT_CONFIG)


# -- with default knobs ---------------------------------------------------------------------

def test_a_default_create_ships_its_own_token_and_never_the_pool_password(
        aws, pool, run_annex, with_keys):
    result = create(aws, run_annex, "own-token", *with_keys)
    assert result.returncode == 0, result.stderr
    assert "pool password" not in result.stderr
    members = tarball_of(aws, "own-token")
    with open(pool.password_file, "rb") as handle:
        password = handle.read()
    unscrambled = bytes(b ^ (0xDE, 0xAD, 0xBE, 0xEF)[i % 4] for i, b in enumerate(password))
    for name, content in members.items():
        assert password not in content and unscrambled not in content, name
    assert not any("pool_password" in name for name in members)

    config = members["00annex.config"].decode()
    assert "SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS" in config
    assert "SEC_PASSWORD_FILE" not in config
    assert "SEC_DAEMON_SESSION_DURATION = 1800" in config
    token = members[".annex-own-token/tokens.d/annex"].decode()
    claims = verified_claims(token, pool.password_file)
    lease_end = aws.target_input("own-token")["LeaseExpiration"]
    me = pwd.getpwuid(os.getuid()).pw_name
    assert claims["sub"] == f"own-token.{me}@annex.{TRUST_DOMAIN}"
    assert claims["scope"] == SCOPE
    assert claims["exp"] == lease_end + idtoken.GRACE_SECONDS
    assert abs(claims["iat"] - time.time()) < 120
    assert len(claims["jti"]) == 32 and set(claims["jti"]) <= set("0123456789abcdef")
    assert set(claims) == {"iss", "sub", "iat", "exp", "jti", "scope"}

    # The jti is journaled and shown, so that an admin can revoke this one annex; the token
    # itself is nowhere on the submit side.
    shown = run_annex("-annex-name", "own-token", "-status", "-json", *with_keys)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["token_id"] == claims["jti"]
    with sqlite3.connect(pool.journal_file) as db:
        [plan] = db.execute("SELECT plan FROM requests WHERE annex_id = 'own-token'").fetchone()
    assert json.loads(plan)["token_id"] == claims["jti"]
    signature = token.rsplit(".", 1)[1]
    for directory, _, files in os.walk(pool.root):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    assert signature.encode() not in handle.read(), path


def test_each_annex_has_its_own_jti(aws, pool, run_annex, with_keys):
    for name in ("jti-a", "jti-b"):
        assert create(aws, run_annex, name, *with_keys).returncode == 0
    first, second = (verified_claims(tarball_of(aws, name)[f".annex-{name}/tokens.d/annex"]
                                     .decode(), pool.password_file)
                     for name in ("jti-a", "jti-b"))
    assert first["jti"] != second["jti"] and first["sub"] != second["sub"]


def test_a_lease_change_renews_the_token_with_the_same_jti(aws, pool, run_annex, with_keys):
    assert create(aws, run_annex, "renewed", *with_keys).returncode == 0
    before = tarball_of(aws, "renewed")
    old = verified_claims(before[".annex-renewed/tokens.d/annex"].decode(), pool.password_file)

    extended = run_annex("-annex-name", "renewed", "-lease-duration", "7200", *with_keys)
    assert extended.returncode == 0, extended.stderr
    new_end = aws.target_input("renewed")["LeaseExpiration"]
    stored = aws.s3.head_object(Bucket=BUCKET, Key=aws.config_key("renewed"))
    assert stored["Metadata"]["annex-lease-expiration"] == str(new_end)
    after = tarball_of(aws, "renewed")
    new = verified_claims(after[".annex-renewed/tokens.d/annex"].decode(), pool.password_file)
    # ANNEX_TOKEN_LIFETIME (7200 s by default) from its minting, never past the lease end +
    # the grace: here the lifetime is the nearer.
    assert new["exp"] == min(new["iat"] + 7200, new_end + idtoken.GRACE_SECONDS) > old["exp"]
    assert (new["jti"], new["sub"], new["scope"]) == (old["jti"], old["sub"], old["scope"])
    # Everything else in the object is as it was.
    del before[".annex-renewed/tokens.d/annex"], after[".annex-renewed/tokens.d/annex"]
    assert before == after


# -- what the admin configures ------------------------------------------------------------

def run_own(pool: LocalPool, aws, name: str) -> subprocess.CompletedProcess:
    with AnnexDaemon(pool):
        return create(aws, lambda *args: run_program([script("condor_annex"), *args, "-public", pool.access_key_file, "-secret",
             pool.secret_key_file], pool.env(), timeout=60), name)


def test_with_no_signing_key_and_no_token_the_create_is_refused(aws, moto_server, tmp_path):
    lonely = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, pool_password=False)
    result = run_own(lonely, aws, "no-key")
    assert result.returncode == 4, result.stderr
    assert "could not authenticate to the pool" in result.stderr
    assert f"the token signing key {lonely.password_file}" in result.stderr
    assert "No such file or directory" in result.stderr
    for fix in ("ANNEX_TOKEN_SIGNING_KEY", "SEC_PASSWORD_DIRECTORY", "-idtoken-file"):
        assert fix in result.stderr
    assert aws.all_fleets() == []


def test_the_pool_password_only_when_the_admin_opts_in_and_with_a_notice(aws, moto_server,
                                                                        tmp_path):
    opted = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET,
                                           extra="ANNEX_SEND_POOL_PASSWORD = true")
    result = run_own(opted, aws, "opted-in")
    assert result.returncode == 0, result.stderr
    assert "notice: this annex's instances get the pool password " \
        "(ANNEX_SEND_POOL_PASSWORD = true)" in result.stderr
    members = tarball_of(aws, "opted-in")
    assert members[".annex-opted-in/pool_password"] == b"pool-password-for-tests"


def test_a_named_signing_key_signs_and_is_not_doubled(aws, moto_server, tmp_path):
    named = LocalPool(str(tmp_path)).write(
        moto_server.url, secret=SECRET,
        extra=f"ANNEX_TOKEN_SIGNING_KEY = annexes\nTRUST_DOMAIN = {TRUST_DOMAIN}\n"
              "ANNEX_TOKEN_IDENTITY = {annex}@annexes.$(TRUST_DOMAIN)")
    key_file = os.path.join(tmp_path, "passwords.d", "annexes")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(idtoken.unscramble(b"a key for annexes only"))
    result = run_own(named, aws, "named-key")
    assert result.returncode == 0, result.stderr
    token = tarball_of(aws, "named-key")[".annex-named-key/tokens.d/annex"].decode()
    claims = verified_claims(token, key_file, key_id="annexes")
    assert claims["sub"] == f"named-key@annexes.{TRUST_DOMAIN}"


def test_the_signing_key_is_found_as_htcondor_finds_it(condor_config, tmp_path):
    condor_config("TRUST_DOMAIN = td.example.org")
    found = knobs.token_settings()
    assert (found.key_id, found.key_file) == ("POOL", f"{tmp_path}/passwords.d/POOL")
    assert found.issuer == "td.example.org"
    assert found.subject("a1", "alice") == "a1.alice@annex.td.example.org"
    condor_config("SEC_PASSWORD_FILE = /etc/pw\nSEC_TOKEN_POOL_SIGNING_KEY_FILE = /etc/signing")
    assert knobs.token_settings().key_file == "/etc/signing"
    condor_config("SEC_PASSWORD_FILE = /etc/pw")
    assert knobs.token_settings().key_file == "/etc/pw"
    condor_config("ANNEX_TOKEN_SIGNING_KEY = annexes\nSEC_PASSWORD_DIRECTORY = /etc/keys\n"
                  "ANNEX_TOKEN_IDENTITY = annex-{annex}@$(UID_DOMAIN)\nUID_DOMAIN = u.org")
    found = knobs.token_settings()
    assert (found.key_id, found.key_file) == ("annexes", "/etc/keys/annexes")
    assert found.subject("a1", "alice") == "annex-a1@u.org"
    for bad in ("../POOL", "a/b", ".hidden"):
        condor_config(f"ANNEX_TOKEN_SIGNING_KEY = {bad}")
        with pytest.raises(KnobError, match="ANNEX_TOKEN_SIGNING_KEY"):
            knobs.token_settings()
    condor_config("TRUST_DOMAIN = two words")
    with pytest.raises(KnobError, match="TRUST_DOMAIN"):
        knobs.token_settings()


def test_legacy_pool_key_is_cut_at_its_first_nul(tmp_path):
    key_file = tmp_path / "POOL"
    key_file.write_bytes(idtoken.unscramble(b"password\0trailing"))
    settings = idtoken.TokenSettings("POOL", str(key_file), "POOL", TRUST_DOMAIN, "x@y",
                                     legacy_password_key=True)
    assert idtoken.read_key(settings) == b"passwordpassword"
    token = idtoken.for_annex(settings, "x@y", "00" * 16, int(time.time()) + 60, time.time(),
                              7200)
    plain = tmp_path / "plain"
    plain.write_bytes(idtoken.unscramble(b"password"))
    assert verified_claims(token, str(plain))["sub"] == "x@y"


def test_a_lease_change_that_cannot_renew_the_token_changes_nothing(aws, pool, run_annex,
                                                                    with_keys):
    assert create(aws, run_annex, "stuck", *with_keys).returncode == 0
    end = aws.target_input("stuck")["LeaseExpiration"]
    before = tarball_of(aws, "stuck")
    os.rename(pool.password_file, pool.password_file + ".away")
    try:
        refused = run_annex("-annex-name", "stuck", "-lease-duration", "7200", *with_keys)
    finally:
        os.rename(pool.password_file + ".away", pool.password_file)
    assert refused.returncode == 4, refused.stderr
    assert f"the token signing key {pool.password_file}" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert aws.target_input("stuck")["LeaseExpiration"] == end
    assert tarball_of(aws, "stuck") == before
