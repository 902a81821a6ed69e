"""One IDTOKEN per annex, minted here, so that no annex instance ever holds the pool password.

HTCondor's own tools (``condor_token_create``) are not on every submit node and ``htcondor2``
cannot mint tokens, so this follows ``Condor_Auth_Passwd::generate_token`` byte for byte with
the standard library (see ../shared/reference/htcondor-idtokens.md for the sources):

1. the signing key file (named by ``ANNEX_TOKEN_SIGNING_KEY``, see :class:`TokenSettings`) is
   stored scrambled: byte *i* XOR ``DE AD BE EF``[i % 4];
2. key id ``POOL`` only: the bytes are doubled (k || k), as HTCondor has done since 8.9.12;
   under the legacy ``SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD`` the *raw file* is first cut at
   its first NUL byte (HTCondor 8.4 padded the scrambled password with NULs), then, once
   unscrambled, cut again at its first NUL (:func:`key_from_file`, after
   ``getTokenSigningKey`` in HTCondor's store_cred.cpp);
3. JWT key = HKDF-SHA256(that, salt ``htcondor``, info ``master jwt``, 32 bytes);
4. header ``{"alg": "HS256", "kid": <key id>}``; claims ``iss`` (the trust domain), ``sub``,
   ``iat``, ``exp``, ``jti``, and ``scope`` as one space-separated string;
5. HMAC-SHA256 over ``base64url(header).base64url(claims)``.

The ``jti`` is the annex's, fixed when it is planned and journaled (the token never is): every
token an annex ever gets carries it, so ``SEC_TOKEN_REVOCATION_EXPR`` on the central manager
revokes one annex, lease changes included.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass

from annexd.process import privileges

#: What an annex's startd and master need, nothing more: read the pool, advertise themselves.
SCOPE = ("READ", "ADVERTISE_STARTD", "ADVERTISE_MASTER")
#: A token outlives its lease by this much: more than the instances' shutdown margin plus two
#: refresh periods (condor_annex_ec2 -refresh-lease, every minute), so a lease changed in its
#: last minutes reaches every instance before its old token expires.
GRACE_SECONDS = 900
#: What the instance config sets SEC_DAEMON_SESSION_DURATION to: a token is checked only when
#: a security session is made, so an expired one stops working within this long.
SESSION_SECONDS = 1800
MAX_KEY_BYTES = 1 << 16
_SCRAMBLE = b"\xde\xad\xbe\xef"


class TokenKeyError(Exception):
    """The signing key cannot be used; the message names the file, never its content."""


@dataclass(frozen=True)
class TokenSettings:
    """Which key signs annex tokens, and what goes into them (see annexd.config.knobs)."""

    key_id: str                 # ANNEX_TOKEN_SIGNING_KEY
    key_file: str               # where that key is, resolved as HTCondor does
    key_knob: str               # the knob that names key_file, for messages
    issuer: str                 # TRUST_DOMAIN
    identity: str               # ANNEX_TOKEN_IDENTITY, with {annex} and {user} in it
    legacy_password_key: bool = False   # SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD

    def subject(self, annex_id: str, user: str) -> str:
        return self.identity.replace("{annex}", annex_id).replace("{user}", user)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unscramble(data: bytes) -> bytes:
    """HTCondor's ``simple_scramble`` (its own inverse)."""
    return bytes(byte ^ _SCRAMBLE[i % 4] for i, byte in enumerate(data))


def hkdf_sha256(secret: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256 (extract, then expand)."""
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def key_from_file(data: bytes, key_id: str, legacy_password_key: bool = False) -> bytes:
    """The signing secret HTCondor makes of a key file's bytes (``getTokenSigningKey``).

    The POOL key (key id ``POOL``, or empty) is doubled; with
    ``SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD`` the raw bytes are cut at their first NUL
    before unscrambling (a pre-8.5.4 pool password file is the scrambled password padded
    with NULs, which unscrambled would be DE AD BE EF bytes, not NULs) and the unscrambled
    bytes at theirs.  Other keys are unscrambled only.
    """
    is_pool = key_id in ("", "POOL")
    truncate = is_pool and legacy_password_key
    if truncate:
        data = data.split(b"\0", 1)[0]
    key = unscramble(data)
    if is_pool:
        if truncate:
            key = key.split(b"\0", 1)[0]
        key += key
    return key


def read_key(settings: TokenSettings) -> bytes:
    """The signing key's secret as HTCondor's HKDF input (unscrambled, doubled for POOL)."""
    where = f"the token signing key {settings.key_file} ({settings.key_knob})"
    try:
        with privileges.as_root():  # a root-only key, as HTCondor keeps them
            fd = os.open(settings.key_file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise TokenKeyError(f"condor_annexd cannot read {where}: {error.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TokenKeyError(f"{where} is not a regular file")
        data = os.read(fd, MAX_KEY_BYTES + 1)
    except OSError as error:
        raise TokenKeyError(f"condor_annexd cannot read {where}: {error.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_BYTES:
        raise TokenKeyError(f"{where} is larger than {MAX_KEY_BYTES} bytes: not a key")
    key = key_from_file(data, settings.key_id, settings.legacy_password_key)
    if not key:
        raise TokenKeyError(f"{where} is empty")
    return key


def new_token_id() -> str:
    """A jti as HTCondor makes them: 16 random bytes, in hex."""
    return secrets.token_hex(16)


def mint(key: bytes, key_id: str, *, issuer: str, subject: str, token_id: str,
         issued_at: int, expires: int, scope: tuple[str, ...] = SCOPE) -> str:
    """A signed IDTOKEN; ``key`` as :func:`read_key` returns it."""
    header = {"alg": "HS256", "kid": key_id}
    claims = {"iss": issuer, "sub": subject, "iat": int(issued_at), "exp": int(expires),
              "jti": token_id, "scope": " ".join(f"condor:/{name}" for name in scope)}
    signing_input = ".".join(_b64(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    jwt_key = hkdf_sha256(key, b"htcondor", b"master jwt")
    signature = hmac.new(jwt_key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def expiry(lease_end: int, now: float, lifetime: int) -> int:
    """When a token minted ``now`` expires: ``lifetime`` after its minting
    (ANNEX_TOKEN_LIFETIME), and never past the lease end plus the grace.  A short life is
    what ends a token after ``-off`` (HTCondor cannot be told to forget one): the daemon
    renews the tokens of live annexes only."""
    return min(int(now) + lifetime, lease_end + GRACE_SECONDS)


def renewal_due(minted: float, lease_end: int, lifetime: int) -> float:
    """When the token minted at ``minted`` is renewed: when half of its life is left.  A
    token that already reaches the lease end plus the grace is never renewed (infinity)."""
    expires = expiry(lease_end, minted, lifetime)
    if expires >= lease_end + GRACE_SECONDS:
        return float("inf")
    return minted + (expires - int(minted)) / 2


def for_annex(settings: TokenSettings, subject: str, token_id: str, lease_end: int,
              now: float, lifetime: int) -> str:
    """The token an annex's instances get: valid for ``lifetime`` seconds, never past its
    lease end plus the grace (:func:`expiry`)."""
    return mint(read_key(settings), settings.key_id, issuer=settings.issuer, subject=subject,
                token_id=token_id, issued_at=int(now), expires=expiry(lease_end, now, lifetime))
