"""A validated create request, made into an immutable plan of exactly what to ask AWS for.

Pure: no I/O, the clock is passed in.  Everything a later step (or a recovery after a crash)
needs is in the plan, and the plan is what the journal stores, so it must never hold secrets.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from annexd_lambda import lease

from annexd.instance_config import idtoken
from annexd import launch
from annexd.launch import adjust, ec2fleet, spotfleet
from annexd.config.knobs import PoolSettings, RegionSettings
from annexd.rpc.protocol import shown

#: The original condor_annex's lease functions, as its -setup's stack named them
#: (HTCondorAnnex-LambdaFunctions-sfrLeaseFunction-XXXX): they take another input ({AnnexID,
#: S3BucketName, LeaseExpiration}) and find instances by another token, so a rule of ours
#: calling one would never end its annex.
ORIGINALS_LEASE_FUNCTION = re.compile(r":function:[^:]*-(sfr|odi)LeaseFunction-")

LAMBDA_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):\d{12}:function:[A-Za-z0-9_-]{1,64}"
    r"(:(\$LATEST|[A-Za-z0-9_-]+))?\Z")


#: How long an auto annex's instance stays unclaimed before it shuts itself down, unless
#: -idle says otherwise (STARTD_NOCLAIM_SHUTDOWN): about what a new instance takes from the
#: order to its slot in the pool.  The daemon orders again within one demand cycle when
#: demand comes back, so an instance kept idle longer than a replacement takes to arrive costs
#: more than it saves (the ski-rental rule: at most twice the best one could do knowing the
#: future); bench/demand.py measured the unclaimed time of a 120-s timeout over the issue's
#: goal, all of it the timeout after each instance's last job (docs/benchmarks.md).
AUTO_IDLE_SECONDS = 90


def auto_idle_seconds(negotiator_interval: int) -> int:
    """An auto annex's default idle time: AUTO_IDLE_SECONDS, but always half a minute more
    than a negotiation cycle, so that a booted instance is matched before it leaves (else
    the daemon would order it again and again, each leaving unmatched)."""
    return max(AUTO_IDLE_SECONDS, negotiator_interval + 30)


class InvalidRequest(ValueError):
    """The request cannot be carried out as given; the message says which input is wrong."""


@dataclass(frozen=True)
class AnnexPlan:
    annex_id: str
    annex_type: str
    owner_uid: int
    region: str
    lease_function_arn: str
    lease_end: int
    bucket: str
    client_token: str
    rule_schedule: str
    #: The launch call's parameters, as built by the annex type's launch kind.
    launch_request: dict[str, Any]
    collector_host: str = ""
    owners: tuple[str, ...] = ()            # empty: anyone's jobs may run
    idle_seconds: int = 900
    #: "minted" (the daemon's own token for this annex), "idtoken" (the user's or admin's
    #: token file) or "password" (the pool password, only if the admin opted in).
    pool_auth: str = "password"
    #: A minted token's jti and sub: the annex's for every token it gets (never the token).
    token_id: str = ""
    token_identity: str = ""
    #: The tarball needs material that only the request carried (the user's IDTOKEN or
    #: -config-dir files), which is never journaled: without the request it can't be rebuilt.
    needs_request_material: bool = False
    created_at: int = 0                     # when the lease started (lease_end - duration)
    notices: tuple[str, ...] = field(default=())
    #: Its AWS resources are found by its ClientToken (config key, lease Input, teardown);
    #: False in the plans of earlier releases, whose resources are found by name.
    keyed_by_request: bool = False
    #: An auto annex (``-auto``): the daemon sizes it from demand (:mod:`annexd.commands.auto`),
    #: from none up to its launch request's count (``-max-instances``); nothing is launched by
    #: the create itself.
    auto: bool = False
    #: ``-max-cost`` of an auto annex, in US dollars (spent plus committed, at worst).
    max_cost: float | None = None
    #: ``-max-instances`` of an auto annex: instances, whatever the weights (what the site's
    #: caps count it at).  None in earlier plans, whose launch request's count was it.
    max_instances: int | None = None
    #: The AWS principal whose keys create it (its aws:userid, from STS at create): its
    #: resources carry it as the owner tag, its config object lives under its key prefix, and
    #: the user policy lets only that principal touch them.  "" in earlier releases' plans.
    owner: str = ""

    @property
    def kind(self) -> launch.Kind:
        return launch.kind_of(self.annex_type)

    @property
    def most_instances(self) -> int:
        """An auto annex's ``-max-instances`` (an earlier plan's: its launch request's count)."""
        return self.max_instances if self.max_instances is not None else \
            self.kind.capacity(self.launch_request)

    @property
    def request_token(self) -> str | None:
        """The ClientToken that marks what this request made; None for an earlier release's
        plan, whose resources are known by name only."""
        return self.client_token if self.keyed_by_request else None

    @property
    def config_key(self) -> str:
        return lease.config_key(self.annex_id, self.region, self.request_token,
                                self.owner or None)

    @property
    def owner_tags(self) -> dict[str, str]:
        """The owner tag its resources carry (none for an earlier release's plan)."""
        return {lease.OWNER_TAG: self.owner} if self.owner else {}

    @property
    def rule_name(self) -> str:
        return self.annex_id

    @property
    def target_id(self) -> str:
        return self.annex_id

    def owns_rule(self, description: str | None) -> bool:
        """Whether a lease rule of the annex's name (its ``description``; None: no rule) is
        this request's, judged by what its release wrote: this release names the request
        (its ClientToken); an earlier release named none (``HTCondor annex <name>: enforce
        the lease``), and a lease this release put back for such an annex names the plan's
        ClientToken."""
        if description is None:
            return False
        return description == lease.rule_description(self.annex_id, self.client_token) or \
            (not self.keyed_by_request and
             description == lease.old_rule_description(self.annex_id))

    def target_input(self, lease_end: int | None = None) -> str:
        """The constant Input EventBridge hands the lease function on every tick."""
        body = {
            "AnnexID": self.annex_id,
            "AnnexType": self.annex_type,
            "S3BucketName": self.bucket,
            "LeaseExpiration": self.lease_end if lease_end is None else lease_end,
        }
        if self.request_token is not None:
            body["ClientToken"] = self.request_token
        if self.owner:
            body["AnnexOwner"] = self.owner
        return json.dumps(body, sort_keys=True)

    def to_record(self) -> str:
        # The fields as they are: json.dumps walks the nested launch request itself, so the
        # deep copy asdict() makes first (thousands of calls for a fleet config) is not needed.
        return json.dumps({name: getattr(self, name) for name in _FIELDS}, sort_keys=True)

    @classmethod
    def from_record(cls, text: str) -> "AnnexPlan":
        data = json.loads(text)
        # Journals written before the launch kinds: one field per kind.
        for old in ("spot_fleet_config", "on_demand_request"):
            if data.get(old):
                data["launch_request"] = data[old]
            data.pop(old, None)
        data["notices"] = tuple(data.get("notices", ()))
        data["owners"] = tuple(data.get("owners", ()))
        return cls(**data)


_FIELDS = tuple(plan_field.name for plan_field in fields(AnnexPlan))


def rate_expression(minutes: int) -> str:
    return f"rate({minutes} minute{'s' if minutes != 1 else ''})"


def new_annex_id() -> str:
    return f"annex-{uuid.uuid4().hex[:8]}"


def _lease_function_arn(requested: str | None, settings: RegionSettings) -> str:
    arn = requested or settings.lease_function_arn
    if not arn:
        raise InvalidRequest(
            "no lease function: pass -lease-function-arn ARN or set "
            f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN (condor_annex -aws-region {settings.region} -setup "
            "creates one)")
    match = LAMBDA_ARN.match(arn)
    if not match:
        raise InvalidRequest(f"-lease-function-arn: {shown(arn)!r} is not a Lambda function ARN")
    if ORIGINALS_LEASE_FUNCTION.search(arn):
        raise InvalidRequest(
            f"-lease-function-arn: {shown(arn)!r} is the original condor_annex's lease function,"
            " which cannot end annexes made here: use ANNEX_DEFAULT_LEASE_FUNCTION_ARN "
            f"(condor_annex -aws-region {settings.region} -setup makes one)")
    if match.group("region") != settings.region:
        raise InvalidRequest(
            f"-lease-function-arn: the function is in {match.group('region')} but annexes are "
            f"created in {settings.region}; EventBridge can only call a function in its region")
    return arn


#: Said on every create that ships the pool password.
POOL_PASSWORD_NOTICE = (
    "this annex's instances get the pool password (ANNEX_SEND_POOL_PASSWORD = true): whoever "
    "controls one of them can act as any daemon of the pool; unset it to give each annex its "
    "own token instead")
IDENTITY = re.compile(r"[A-Za-z0-9._-]{1,128}@[A-Za-z0-9._-]{1,253}")


def _pool_auth(annex: dict[str, Any], pool: PoolSettings) -> str:
    """The user's token wins, then the admin's token file, then the pool password if the
    admin opted in, else the daemon mints a token for the annex (refused later, naming the
    key, if it cannot)."""
    if annex.get("idtoken") or pool.idtoken_file:
        return "idtoken"
    if pool.send_password:
        if pool.password_file:
            return "password"
        raise InvalidRequest(
            "ANNEX_SEND_POOL_PASSWORD = true, but SEC_PASSWORD_FILE names no file: annex "
            "instances could not authenticate to the pool (unset ANNEX_SEND_POOL_PASSWORD to "
            "give each annex its own token, or pass -idtoken-file)")
    if pool.token is None:
        raise InvalidRequest("annex instances could not authenticate to the pool: pass "
                             "-idtoken-file, or have the admin set ANNEX_TOKEN_SIGNING_KEY")
    return "minted"


def _token_identity(pool: PoolSettings, annex_id: str, user_name: str) -> str:
    assert pool.token is not None
    subject = pool.token.subject(annex_id, user_name)
    if not IDENTITY.fullmatch(subject):
        raise InvalidRequest(f"ANNEX_TOKEN_IDENTITY makes {shown(subject)!r} for this annex, "
                             "which is not an HTCondor identity (name@domain)")
    return subject


def join_defaults(annex: dict[str, Any], settings: RegionSettings) -> adjust.JoinDefaults:
    """-setup's instance profile and security groups: the user's (condor_annex sends what
    their configuration says), else the admin's in the daemon's configuration."""
    return adjust.JoinDefaults(
        region=settings.region,
        instance_profile_arn=annex.get("instance_profile_arn") or settings.instance_profile_arn,
        security_group_ids=tuple(annex.get("security_group_ids") or ())
        or settings.security_group_ids)


def build_plan(annex: dict[str, Any], *, owner_uid: int, settings: RegionSettings,
               owner: str = "",
               lease_rate_minutes: int, now: float, pool: PoolSettings,
               user_name: str) -> AnnexPlan:
    """Turn the ``annex`` part of a schema-valid create request into a plan.

    ``annex["bucket"]`` (the user's own, from their configuration) wins over the region's.
    """
    auto = annex.get("auto")
    if not pool.collector_host:
        raise InvalidRequest("COLLECTOR_HOST is not set for condor_annexd: annex instances "
                             "would not know which pool to join")
    pool_auth = _pool_auth(annex, pool)
    lease_function_arn = _lease_function_arn(annex.get("lease_function_arn"), settings)
    bucket = annex.get("bucket") or settings.bucket
    if not bucket:
        raise InvalidRequest(
            f"no configuration bucket: set ANNEX_DEFAULT_S3_BUCKET (condor_annex -aws-region "
            f"{settings.region} -setup creates one)")
    annex_id = annex.get("name") or new_annex_id()
    client_token = f"{annex_id}_{uuid.uuid4()}"
    tags = {tag["key"]: tag["value"] for tag in annex.get("tags", [])}
    source_name = annex.get("config_source", "fleet config")
    if "on_demand" in annex:
        kind, source, where = launch.ON_DEMAND, annex["on_demand"], "on-demand annex"
        adjusted: list[str] = []
    else:
        source, dropped = adjust.drop_nulls(annex["fleet_config"])
        kind, adjusted = launch.recognise(source), adjust.null_notice(dropped)
        where = f"{source_name}: invalid {kind.label}"
    try:
        if auto is not None and kind is launch.EC2_FLEET:
            source = ec2fleet.with_site_template(source, settings.launch_template)
        if annex.get("user_data"):
            source, more = adjust.with_user_data(kind, source, annex["user_data"])
            adjusted += more
        built = kind.build(source, annex_id=annex_id, client_token=client_token,
                           count=auto["max_instances"] if auto else annex.get("count"),
                           instance_tags=tags, owner=owner)
        if auto is not None and kind is launch.SPOT_FLEET:
            spotfleet.check_auto(built.request)
        if auto is not None and kind is launch.EC2_FLEET:
            ec2fleet.check_auto(built.request, settings.launch_template)
    except launch.LaunchConfigError as exc:
        raise InvalidRequest(f"{where}: {exc}") from None
    try:  # after the config is known good: its own mistakes are named first
        joined = adjust.with_join_defaults(kind, built.request, join_defaults(annex, settings))
    except launch.LaunchConfigError as exc:
        raise InvalidRequest(f"{source_name}: {exc}") from None
    minted = pool_auth == "minted"
    notices = tuple(f"{source_name}: {notice}" for notice in adjusted + built.notices + joined)
    if bucket != settings.bucket and settings.bucket:
        notices += (f"the configuration bucket is yours, {bucket} (your "
                    f"ANNEX_DEFAULT_S3_BUCKET), not the admin's {settings.bucket}: your "
                    "instance profile must be allowed to read it",)
    return AnnexPlan(
        annex_id=annex_id,
        annex_type=kind.annex_type,
        launch_request=built.request,
        owner_uid=owner_uid,
        region=settings.region,
        lease_function_arn=lease_function_arn,
        lease_end=int(now) + annex["lease_duration"],
        bucket=bucket,
        client_token=client_token,
        rule_schedule=rate_expression(lease_rate_minutes),
        collector_host=pool.collector_host,
        owners=tuple(annex["owners"]) if "owners" in annex else (user_name,),
        idle_seconds=annex.get("idle_seconds",
                               auto_idle_seconds(pool.negotiator_interval)
                               if auto is not None else pool.unclaimed_timeout),
        pool_auth=pool_auth,
        token_id=idtoken.new_token_id() if minted else "",
        token_identity=_token_identity(pool, annex_id, user_name) if minted else "",
        needs_request_material=bool(annex.get("idtoken") or annex.get("config_files")),
        created_at=int(now),
        keyed_by_request=True,
        auto=auto is not None,
        max_cost=auto.get("max_cost") if auto else None,
        max_instances=auto["max_instances"] if auto else None,
        owner=owner,
        notices=notices + ((POOL_PASSWORD_NOTICE,) if pool_auth == "password" else ()),
    )
