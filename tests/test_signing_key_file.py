"""Issue 23, requirement 7: token signing key files are read exactly as HTCondor reads them.

HTCondor's ``getTokenSigningKey`` (src/condor_utils/store_cred.cpp, 25.x) reads the raw file
(``read_secure_file``), and for the POOL key under ``SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD``
cuts the *raw* bytes at their first NUL -- HTCondor 8.4 and earlier wrote the pool password
file as the scrambled password padded with NULs -- then unscrambles, cuts the result at its
first NUL again, and doubles it.  On main the daemon unscrambled first and cut after, so a
NUL-padded legacy file gave the password plus ``DE AD BE EF``... bytes: a key HTCondor does
not use, and tokens no collector would accept.

:func:`htcondor_signing_key` below is that C++ function transliterated line by line (buffer,
lengths, ``strlen``, ``memcpy``), sharing nothing with the daemon's code; tokens are checked
with PyJWT and ``cryptography``'s HKDF, as tests/test_annex_tokens.py does.
"""
from __future__ import annotations

import io
import os
import tarfile
import time

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings, strategies as st

from annexd.instance_config import idtoken
from localaws.pool import BUCKET, AnnexDaemon, LocalPool

from conftest import SECRET, SPOT_CONFIG

TRUST_DOMAIN = "pool.example.org"
DEADBEEF = (0xDE, 0xAD, 0xBE, 0xEF)


def simple_scramble(orig: bytes) -> bytes:
    """secure_file.cpp: ``scrambled[i] = orig[i] ^ deadbeef[i % sizeof(deadbeef)]``."""
    return bytes(orig[i] ^ DEADBEEF[i % len(DEADBEEF)] for i in range(len(orig)))


def htcondor_signing_key(buf: bytes, key_id: str, is_password: bool) -> bytes:
    """``getTokenSigningKey(key_id, contents, err)``, after ``read_secure_file`` gave ``buf``."""
    is_pool = key_id == "" or key_id == "POOL"        # getTokenSigningKeyPath
    double_the_key = is_pool
    truncate_at_first_null = is_pool and is_password  # SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD
    length = len(buf)
    if truncate_at_first_null:
        newlen = 0
        while newlen < length and buf[newlen]:
            newlen += 1
        length = newlen
    if double_the_key:
        pw = bytearray(length * 2 + 1)
        pw[:length] = simple_scramble(buf[:length])
        if truncate_at_first_null:
            pw[length] = 0
            length = pw.index(0)                       # strlen(pw.data())
        pw[length:2 * length] = pw[:length]            # memcpy(&pw[len], &pw[0], len)
        length *= 2
    else:
        pw = bytearray(simple_scramble(buf[:length]))
    return bytes(pw[:length])                          # contents.assign(pw.data(), len)


def legacy_password_file(password: bytes, padding: int) -> bytes:
    """A pool password file as HTCondor 8.4 wrote it: scrambled, then NUL padding."""
    return simple_scramble(password) + b"\0" * padding


def read(tmp_path, data: bytes, key_id: str = "POOL", legacy: bool = True) -> bytes:
    path = tmp_path / (key_id or "POOL")
    path.write_bytes(data)
    path.chmod(0o600)
    return idtoken.read_key(idtoken.TokenSettings(key_id, str(path), "SEC_PASSWORD_FILE",
                                                  TRUST_DOMAIN, "x@y",
                                                  legacy_password_key=legacy))


@pytest.mark.parametrize("padding", [1, 3, 4, 61, 200])
def test_a_nul_padded_legacy_pool_password_gives_htcondors_key(tmp_path, padding):
    data = legacy_password_file(b"pool-secret", padding)
    assert htcondor_signing_key(data, "POOL", True) == b"pool-secretpool-secret"
    assert read(tmp_path, data) == b"pool-secretpool-secret"


def test_without_the_legacy_knob_the_padding_is_part_of_the_key(tmp_path):
    """HTCondor cuts nothing unless SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD is true."""
    data = legacy_password_file(b"pool-secret", 5)
    expected = htcondor_signing_key(data, "POOL", False)
    assert len(expected) == 2 * len(data) and read(tmp_path, data, legacy=False) == expected


def test_a_named_key_is_never_cut_nor_doubled(tmp_path):
    data = legacy_password_file(b"annex-key", 7)
    assert read(tmp_path, data, key_id="annexes") == htcondor_signing_key(data, "annexes", True)
    assert read(tmp_path, data, key_id="annexes") == simple_scramble(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=1, max_size=80), key_id=st.sampled_from(["POOL", "", "annexes"]),
       legacy=st.booleans())
def test_every_key_file_gives_htcondors_key(data, key_id, legacy):
    """Any bytes, NULs anywhere (raw, or only once unscrambled: a byte DE at i % 4 == 0)."""
    expected = htcondor_signing_key(data, key_id, legacy)
    assert idtoken.key_from_file(data, key_id, legacy) == expected


def jwt_key(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"htcondor",
                info=b"master jwt").derive(secret)


def test_a_token_minted_from_a_padded_legacy_file_verifies_with_htcondors_key(tmp_path):
    data = legacy_password_file(b"pool-secret", 16)
    path = tmp_path / "POOL"
    path.write_bytes(data)
    settings = idtoken.TokenSettings("POOL", str(path), "SEC_PASSWORD_FILE", TRUST_DOMAIN,
                                     "x@y", legacy_password_key=True)
    token = idtoken.for_annex(settings, "a.alice@annex", "00" * 16, int(time.time()) + 60,
                              time.time(), 7200)
    claims = jwt.decode(token, jwt_key(htcondor_signing_key(data, "POOL", True)),
                        algorithms=["HS256"], issuer=TRUST_DOMAIN)
    assert claims["sub"] == "a.alice@annex"


def test_the_daemon_signs_with_htcondors_key_of_a_legacy_pool_password_file(
        aws, moto_server, tmp_path):
    """The whole path: knobs (SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD), the daemon, the
    token in the annex's config object."""
    pool = LocalPool(str(tmp_path)).write(
        moto_server.url, secret=SECRET, extra=f"TRUST_DOMAIN = {TRUST_DOMAIN}\n"
        f"SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD = true\n"
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}")
    data = legacy_password_file(b"pool-password-for-tests", 9)
    with open(pool.password_file, "wb") as handle:
        handle.write(data)
    os.chmod(pool.password_file, 0o600)
    with AnnexDaemon(pool):
        made = pool.condor_annex("-annex-name", "legacy-key", "-count", "1", "-lease-duration",
                                 "3600", "-public-key-file", pool.access_key_file,
                                 "-secret-key-file", pool.secret_key_file, SPOT_CONFIG)
    assert made.returncode == 0, made.stderr
    body = aws.s3.get_object(Bucket=BUCKET, Key=aws.config_key("legacy-key"))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        token = archive.extractfile(".annex-legacy-key/tokens.d/annex").read().decode()
    claims = jwt.decode(token, jwt_key(htcondor_signing_key(data, "POOL", True)),
                        algorithms=["HS256"], issuer=TRUST_DOMAIN)
    assert claims["sub"].startswith("legacy-key.")
