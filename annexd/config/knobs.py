"""HTCondor configuration knobs, read through the real ``htcondor2`` bindings.

``htcondor2.param`` returns typed values only for knobs in HTCondor's own param table; every
other knob comes back as a macro-expanded string.  So each knob here is parsed by us, and a
malformed value raises :class:`KnobError` naming the knob (the daemon exits 99 on it, the CLI
prints it).  Region-prefixed knobs (``us_east_1.ANNEX_DEFAULT_S3_BUCKET``) win over plain ones,
the way the original ``condor_annex -aws-region`` used HTCondor local names.

Shared by daemon and CLI: no boto3 here.
"""
from __future__ import annotations

import base64
import os
import pwd
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from annexd.rpc import protocol

if TYPE_CHECKING:  # imported where a token is configured: the CLI never needs hashlib, hmac
    from annexd.instance_config import idtoken

T = TypeVar("T")

#: Endpoint knob per AWS service (botocore service name).
ENDPOINT_KNOBS = {
    "ec2": "ANNEX_DEFAULT_EC2_URL",
    "events": "ANNEX_DEFAULT_CWE_URL",
    "lambda": "ANNEX_DEFAULT_LAMBDA_URL",
    "s3": "ANNEX_DEFAULT_S3_URL",
    "cloudformation": "ANNEX_DEFAULT_CF_URL",
    "sts": "ANNEX_DEFAULT_STS_URL",
    "iam": "ANNEX_DEFAULT_IAM_URL",
}

REGION_PATTERN = re.compile(protocol.REGION_PATTERN)

#: The one table of our knobs' defaults.  The code reads them from here; config.d/80annexd
#: (``#KNOB = default``) is checked against it by tests/test_config_fragment.py, and README's
#: knob table and condor_annexd(8) are generated from it (annexd.config.knobref).  Path defaults are
#: ``$(DIRECTORY_KNOB)/file``.
DEFAULTS: dict[str, str | int | float | bool] = {
    "ANNEXD_SOCKET": "$(LOCK)/annexd.sock",
    "ANNEXD_JOURNAL": "$(SPOOL)/annexd-journal.sqlite",
    "ANNEXD_LOG": "$(LOG)/AnnexdLog",
    "ANNEXD_PIDFILE": "$(LOCK)/annexd.pid",
    "ANNEXD_LEASE_RATE_MINUTES": 1,
    "ANNEXD_LEASE_CHECK_INTERVAL": 60,
    "ANNEXD_AWS_MAX_ATTEMPTS": 5,
    "ANNEXD_AWS_TIMEOUT_SECONDS": 60,
    "ANNEXD_STEP_ATTEMPTS": 4,
    "ANNEXD_RETRY_BASE_SECONDS": 1,
    "ANNEXD_RETRY_MAX_SECONDS": 30,
    "ANNEXD_FUNCTION_CHECK_SECONDS": 300,
    "ANNEXD_ALLOW_DAEMON_CREDENTIALS": False,
    "ANNEXD_MAX_CLIENTS": 64,
    "ANNEXD_MAX_CLIENTS_PER_USER": 16,
    "ANNEXD_CLIENT_TIMEOUT_SECONDS": 30,
    "ANNEXD_SETUP_POLL_SECONDS": 5,
    "ANNEX_DEFAULT_AWS_REGION": "us-east-1",
    "ANNEX_DEFAULT_UNCLAIMED_TIMEOUT": 900,
    "ANNEX_TOKEN_SIGNING_KEY": "POOL",
    # The annex and its owner, in a domain of annexes of their own, which the central manager
    # can admit with one ALLOW entry (*@annex.<trust domain>).
    "ANNEX_TOKEN_IDENTITY": "{annex}.{user}@annex.$(TRUST_DOMAIN)",
    "ANNEX_SEND_POOL_PASSWORD": False,
    "ANNEX_TOKEN_LIFETIME": 7200,
    "ANNEX_DEFAULT_LEASE_DURATION": 3000,
    # Auto annexes: a decision within 10 s (p95) of a job going idle needs a cycle of 5 s
    # (bench/demand.py: 15 s gave a p95 of about 14 s).
    "ANNEX_DEMAND_INTERVAL": 5,
    "ANNEX_AUTO_LINGER": 600,
}

#: htcondor2's configuration is process-wide: never read knobs while it is being reloaded.
_CONFIG_LOCK = threading.RLock()


class KnobError(Exception):
    """A configuration knob is missing or malformed."""


def region_local_name(region: str) -> str:
    """HTCondor local-name form of a region: ``us-east-1`` -> ``us_east_1``."""
    return re.sub(r"[^A-Za-z0-9_./]", "_", region)


def _htcondor() -> Any:
    """The htcondor2 bindings, imported on first use: ``condor_annex -help`` and a bad flag
    need no configuration, and the import is a good part of a command's start-up."""
    import htcondor2
    return htcondor2


def reload() -> None:
    """Re-read the HTCondor configuration (SIGHUP / condor_reconfig)."""
    with _CONFIG_LOCK:
        _htcondor().reload_config()


def set_value(name: str, value: str) -> None:
    """Set a knob in this process's configuration (a default HTCondor itself must see)."""
    with _CONFIG_LOCK:
        _htcondor().param[name] = value


def raw(name: str, region: str | None = None) -> str | None:
    """The knob's value as a stripped string, or None when unset or empty."""
    names = ([f"{region_local_name(region)}.{name}"] if region else []) + [name]
    with _CONFIG_LOCK:
        param = _htcondor().param
        for candidate in names:
            value = param.get(candidate)
            if value is not None and str(value).strip():
                return str(value).strip()
    return None


def _typed(name: str, default: T, parse: Callable[[str], T], region: str | None) -> T:
    value = raw(name, region)
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError as exc:
        raise KnobError(f"{name} = {value!r}: {exc}") from None


def _positive_int(text: str) -> int:
    try:
        number = int(text, 10)
    except ValueError:
        raise ValueError("expected a whole number") from None
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


def _positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not number > 0:
        raise ValueError("must be greater than zero")
    return number


#: The shortest ANNEX_TOKEN_LIFETIME: renewed at half its life, a token must outlast a few
#: renewal passes and the instances' once-a-minute refresh.
MIN_TOKEN_LIFETIME = 60


def _token_lifetime(text: str) -> int:
    number = _positive_int(text)
    if number < MIN_TOKEN_LIFETIME:
        raise ValueError(f"must be at least {MIN_TOKEN_LIFETIME} seconds")
    return number


def _non_negative_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be zero or more")
    return number


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError("expected true or false")


def string(name: str, default: str | None = None, region: str | None = None) -> str | None:
    return _typed(name, default, str, region)


_ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


def _role_arn(text: str) -> str:
    if not _ROLE_ARN.match(text):
        raise ValueError("not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    return text


def role_arn(name: str) -> str | None:
    """An IAM role ARN knob; None when unset."""
    return _typed(name, None, _role_arn, None)


def positive_int(name: str, region: str | None = None, *, default: int | None = None) -> int:
    """An ANNEX* knob (default from DEFAULTS), or another with its ``default``."""
    return _typed(name, int(DEFAULTS[name]) if default is None else default, _positive_int,
                  region)


def positive_float(name: str, region: str | None = None) -> float:
    return _typed(name, float(DEFAULTS[name]), _positive_float, region)


def non_negative_float(name: str, region: str | None = None) -> float:
    return _typed(name, float(DEFAULTS[name]), _non_negative_float, region)


def boolean(name: str, region: str | None = None) -> bool:
    return _typed(name, bool(DEFAULTS[name]), _bool, region)


def path(name: str) -> str:
    """A file path knob, defaulting (see DEFAULTS) to ``$(DIRECTORY_KNOB)/file``."""
    value = raw(name)
    if value is None:
        directory_knob, default_file = re.fullmatch(r"\$\((\w+)\)/(.+)",
                                                    str(DEFAULTS[name])).groups()
        directory = raw(directory_knob)
        if directory is None:
            raise KnobError(f"{name} is not set and neither is {directory_knob}")
        value = os.path.join(directory, default_file)
    return value


def aws_region() -> str:
    return raw("ANNEX_DEFAULT_AWS_REGION") or str(DEFAULTS["ANNEX_DEFAULT_AWS_REGION"])


def endpoint_url(service: str, region: str) -> str | None:
    """The endpoint URL for ``service`` in ``region``, or None to let botocore choose.

    HTCondor's param table defaults these knobs to the us-east-1 public endpoints.  Used for
    another region they would send every call to the wrong region (bug 8 of the original),
    so a value that names a different AWS region than the annex's is treated as unset.
    """
    url = raw(ENDPOINT_KNOBS[service], region)
    if url is None:
        return None
    named = re.search(r"\.([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com", url)
    if named and named.group(1) != region:
        return None
    return url


def user_config_file() -> str:
    """The file HTCondor reads as this user's configuration.

    ``USER_CONFIG_FILE`` (HTCondor's default: ``user_config``); a relative name is taken
    inside ``.condor/`` of the user's home directory *from the password database* -- not
    ``$HOME`` and not the working directory -- as HTCondor itself resolves it.
    """
    name = raw("USER_CONFIG_FILE") or "user_config"
    if os.path.isabs(name):
        return name
    return os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".condor", name)


@dataclass(frozen=True)
class ClientSettings:
    """What ``condor_annex`` needs from the configuration (the user's config file included)."""

    socket_path: str
    region: str
    lease_function_arn: str | None
    bucket: str | None
    access_key_file: str | None
    secret_key_file: str | None
    lease_duration: int
    user_config_file: str
    #: The fleet config -slots N uses when none is given (the original's knob).
    sfr_config_file: str | None = None

    @classmethod
    def load(cls, region: str | None = None) -> "ClientSettings":
        region = region or aws_region()
        return cls(
            socket_path=path("ANNEXD_SOCKET"),
            region=region,
            lease_function_arn=string("ANNEX_DEFAULT_LEASE_FUNCTION_ARN", region=region),
            bucket=string("ANNEX_DEFAULT_S3_BUCKET", region=region),
            access_key_file=string("ANNEX_DEFAULT_ACCESS_KEY_FILE", region=region),
            secret_key_file=string("ANNEX_DEFAULT_SECRET_KEY_FILE", region=region),
            lease_duration=positive_int("ANNEX_DEFAULT_LEASE_DURATION", region=region),
            user_config_file=user_config_file(),
            sfr_config_file=string("ANNEX_DEFAULT_SFR_CONFIG_FILE", region=region),
        )


@dataclass(frozen=True)
class RegionSettings:
    """The daemon's view of one region: endpoints and the admin's defaults there."""

    region: str
    endpoints: dict[str, str | None]
    bucket: str | None
    lease_function_arn: str | None
    #: What an annex paid by the daemon's identity launches with (annexd.money.daemonpaid):
    #: the admin's instance profile, key pair, Spot Fleet role and user data (base64).  The
    #: profile and security groups are also what every annex whose launch names none gets
    #: (annexd.launch.adjust.with_join_defaults).
    instance_profile_arn: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    fleet_role_arn: str | None = None
    user_data: str | None = None
    #: The site's launch template (ID or name) an EC2 Fleet paid by the daemon launches from.
    launch_template: str | None = None

    @classmethod
    def load(cls, region: str) -> "RegionSettings":
        return cls(
            region=region,
            endpoints={service: endpoint_url(service, region) for service in ENDPOINT_KNOBS},
            bucket=string("ANNEX_DEFAULT_S3_BUCKET", region=region),
            lease_function_arn=string("ANNEX_DEFAULT_LEASE_FUNCTION_ARN", region=region),
            instance_profile_arn=string("ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN", region=region),
            security_group_ids=id_list(raw("ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS", region)),
            key_name=string("ANNEX_DEFAULT_ODI_KEY_NAME", region=region),
            fleet_role_arn=string("ANNEX_DEFAULT_FLEET_ROLE_ARN", region=region),
            user_data=_user_data(string("ANNEX_DEFAULT_USER_DATA_FILE", region=region)),
            launch_template=string("ANNEX_DEFAULT_LAUNCH_TEMPLATE", region=region),
        )


def _user_data(file: str | None) -> str | None:
    """The admin's user data file, base64 as the launch calls take it; None when unset."""
    if file is None:
        return None
    try:
        with open(file, "rb") as handle:
            return base64.b64encode(handle.read()).decode("ascii")
    except OSError as error:
        raise KnobError(f"ANNEX_DEFAULT_USER_DATA_FILE = {file}: {error.strerror}") from None


def id_list(text: str | None) -> tuple[str, ...]:
    """``sg-1, sg-2`` (commas or spaces, as -setup writes and the original took) as IDs."""
    return tuple(word for word in re.split(r"[\s,]+", text or "") if word)


def _existing(file: str | None) -> str | None:
    """HTCondor defaults SEC_PASSWORD_FILE to $(LOCAL_DIR)/passwords.d/POOL whether or not a
    pool password was ever made; only a file that exists means the pool uses one."""
    return file if file and os.path.isfile(file) else None


KEY_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def token_settings() -> idtoken.TokenSettings:
    """Which key signs annex tokens, found as HTCondor finds it (store_cred.cpp's
    getTokenSigningKeyPath): POOL is SEC_TOKEN_POOL_SIGNING_KEY_FILE, any other name K is
    $(SEC_PASSWORD_DIRECTORY)/K.  The file is read only when a token is minted."""
    from annexd.instance_config import idtoken
    key_id = string("ANNEX_TOKEN_SIGNING_KEY") or str(DEFAULTS["ANNEX_TOKEN_SIGNING_KEY"])
    if not KEY_ID.fullmatch(key_id):
        raise KnobError(f"ANNEX_TOKEN_SIGNING_KEY = {protocol.shown(key_id)!r}: not a key "
                        "name (letters, digits, '.', '_', '-'; a file in SEC_PASSWORD_DIRECTORY)")
    if key_id == "POOL":
        key_file = raw("SEC_TOKEN_POOL_SIGNING_KEY_FILE") or raw("SEC_PASSWORD_FILE")
        where = "ANNEX_TOKEN_SIGNING_KEY = POOL: the file SEC_TOKEN_POOL_SIGNING_KEY_FILE names"
    else:
        directory = raw("SEC_PASSWORD_DIRECTORY")
        key_file = os.path.join(directory, key_id) if directory else None
        where = f"ANNEX_TOKEN_SIGNING_KEY = {key_id}: a file in SEC_PASSWORD_DIRECTORY"
    issuer = raw("TRUST_DOMAIN") or ""
    if not issuer or re.search(r"[ ,\t]", issuer):
        raise KnobError(f"TRUST_DOMAIN = {protocol.shown(issuer)!r}: HTCondor refuses a trust "
                        "domain that is empty or has a space, comma or tab")
    return idtoken.TokenSettings(
        key_id=key_id, key_file=key_file or "(unset)", key_knob=where, issuer=issuer,
        identity=raw("ANNEX_TOKEN_IDENTITY") or
        str(DEFAULTS["ANNEX_TOKEN_IDENTITY"]).replace("$(TRUST_DOMAIN)", issuer),
        legacy_password_key=_typed("SEC_TOKEN_POOL_SIGNING_KEY_IS_PASSWORD", False, _bool,
                                   None))


@dataclass(frozen=True)
class PoolSettings:
    """How annex instances join this pool: where to report and how to authenticate."""

    collector_host: str | None
    unclaimed_timeout: int
    idtoken_file: str | None
    password_file: str | None
    #: How the daemon mints each annex's own token (the default way instances authenticate).
    token: idtoken.TokenSettings | None = None
    #: ANNEX_SEND_POOL_PASSWORD: the admin's opt-in to ship the pool password instead.
    send_password: bool = False
    #: ANNEX_TOKEN_LIFETIME: a minted token expires this long after its minting (or at the
    #: lease end plus the grace, if sooner); the daemon renews it at half its life.
    token_lifetime: int = 7200
    #: HTCondor's NEGOTIATOR_INTERVAL as this host's configuration has it: an auto annex's
    #: instances wait at least that long for their first match (annexd.launch.plan).
    negotiator_interval: int = 60

    @classmethod
    def load(cls) -> "PoolSettings":
        return cls(
            collector_host=string("COLLECTOR_HOST"),
            unclaimed_timeout=positive_int("ANNEX_DEFAULT_UNCLAIMED_TIMEOUT"),
            idtoken_file=string("ANNEX_DEFAULT_IDTOKEN_FILE"),
            password_file=_existing(string("SEC_PASSWORD_FILE")),
            token=token_settings(),
            send_password=_typed("ANNEX_SEND_POOL_PASSWORD",
                                 bool(DEFAULTS["ANNEX_SEND_POOL_PASSWORD"]), _bool, None),
            token_lifetime=_typed("ANNEX_TOKEN_LIFETIME", int(DEFAULTS["ANNEX_TOKEN_LIFETIME"]),
                                  _token_lifetime, None),
            negotiator_interval=positive_int("NEGOTIATOR_INTERVAL", default=60),
        )


@dataclass(frozen=True)
class Caps:
    """The admin's limits on what one user may start (None: no limit), in the units they
    name: instances (whatever the weights) and US dollars (see :mod:`annexd.money.costs`)."""

    max_instances: int | None = None
    max_lease_duration: int | None = None
    max_cost: float | None = None
    max_cost_per_user: float | None = None

    @classmethod
    def load(cls) -> "Caps":
        return cls(
            max_instances=_typed("ANNEX_MAX_INSTANCES", None, _positive_int, None),
            max_lease_duration=_typed("ANNEX_MAX_LEASE_DURATION", None, _positive_int, None),
            max_cost=_typed("ANNEX_MAX_COST", None, _positive_float, None),
            max_cost_per_user=_typed("ANNEX_MAX_COST_PER_USER", None, _positive_float, None),
        )


def _identity_files() -> tuple[str, str] | None:
    access, secret = string("ANNEXD_ACCESS_KEY_FILE"), string("ANNEXD_SECRET_KEY_FILE")
    if (access is None) != (secret is None):
        raise KnobError("set both ANNEXD_ACCESS_KEY_FILE and ANNEXD_SECRET_KEY_FILE, or neither")
    return (access, secret) if access and secret else None


@dataclass(frozen=True)
class DaemonSettings:
    """What ``condor_annexd`` needs from the configuration; re-read on SIGHUP."""

    socket_path: str
    journal_path: str
    home: RegionSettings            # ANNEX_DEFAULT_AWS_REGION's
    pool: PoolSettings
    caps: Caps
    lease_check_interval: float
    lease_rate_minutes: int
    aws_max_attempts: int
    aws_timeout_seconds: float
    step_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    allow_daemon_credentials: bool
    socket_group: str | None
    max_clients: int
    client_timeout_seconds: float
    setup_poll_seconds: float
    #: The daemon's own AWS key files (ANNEXD_ACCESS_KEY_FILE, ANNEXD_SECRET_KEY_FILE);
    #: None: the environment or an instance role.  Paths only: secrets never sit in settings.
    identity_files: tuple[str, str] | None = None
    max_clients_per_user: int = 16
    #: A lease function these credentials saw this recently is not looked up again.
    function_check_seconds: float = 300.0
    #: Auto annexes: seconds between two looks at demand; how long an annex without demand
    #: keeps its lease; where idle jobs and annex slots are read (None: the local schedd and
    #: the pool's collector; else ``file:PATH``).
    demand_interval: float = 5.0
    auto_linger: float = 600.0
    demand_jobs: str | None = None
    demand_slots: str | None = None
    #: The CloudFormation service role -setup's stacks run as (cfn/setup-role.json);
    #: None: they run with the setup keys' own permissions.
    setup_role_arn: str | None = None

    @classmethod
    def load(cls) -> "DaemonSettings":
        return cls(
            socket_path=path("ANNEXD_SOCKET"),
            journal_path=path("ANNEXD_JOURNAL"),
            home=RegionSettings.load(aws_region()),
            pool=PoolSettings.load(),
            caps=Caps.load(),
            lease_check_interval=positive_float("ANNEXD_LEASE_CHECK_INTERVAL"),
            lease_rate_minutes=positive_int("ANNEXD_LEASE_RATE_MINUTES"),
            aws_max_attempts=positive_int("ANNEXD_AWS_MAX_ATTEMPTS"),
            aws_timeout_seconds=positive_float("ANNEXD_AWS_TIMEOUT_SECONDS"),
            step_attempts=positive_int("ANNEXD_STEP_ATTEMPTS"),
            retry_base_seconds=positive_float("ANNEXD_RETRY_BASE_SECONDS"),
            retry_max_seconds=positive_float("ANNEXD_RETRY_MAX_SECONDS"),
            allow_daemon_credentials=boolean("ANNEXD_ALLOW_DAEMON_CREDENTIALS"),
            socket_group=string("ANNEXD_SOCKET_GROUP"),
            max_clients=positive_int("ANNEXD_MAX_CLIENTS"),
            client_timeout_seconds=positive_float("ANNEXD_CLIENT_TIMEOUT_SECONDS"),
            setup_poll_seconds=positive_float("ANNEXD_SETUP_POLL_SECONDS"),
            identity_files=_identity_files(),
            max_clients_per_user=positive_int("ANNEXD_MAX_CLIENTS_PER_USER"),
            function_check_seconds=non_negative_float("ANNEXD_FUNCTION_CHECK_SECONDS"),
            demand_interval=positive_float("ANNEX_DEMAND_INTERVAL"),
            auto_linger=positive_float("ANNEX_AUTO_LINGER"),
            demand_jobs=string("ANNEX_DEMAND_JOBS"),
            demand_slots=string("ANNEX_DEMAND_SLOTS"),
            setup_role_arn=role_arn("ANNEX_SETUP_SERVICE_ROLE_ARN"),
        )

    @property
    def region(self) -> str:
        return self.home.region

    def for_region(self, region: str | None) -> RegionSettings:
        """Settings for ``region`` (default: ANNEX_DEFAULT_AWS_REGION), region knobs first."""
        if region is None or region == self.home.region:
            return self.home
        if not REGION_PATTERN.match(region):
            raise KnobError(f"{region!r} is not an AWS region name")
        return RegionSettings.load(region)
