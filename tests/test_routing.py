"""Which jobs run on an annex, judged by the real ClassAd library on ads as HTCondor prints them.

Both halves come from what ships: the slot's START from an annex's generated configuration
(``annexd.instance_config.tarball``) read by HTCondor's own config parser (``htcondor2``), the
job's added Requirements from ``config.d/85annex-jobs`` read the same way.  Job ads are written
as ``condor_q -long`` prints them, slot ads as ``condor_status -long`` does, and parsed with
``classad2``; ``symmetricMatch`` is the verdict.

Two gaps of ``classad2`` against a real startd do not matter here, because the expressions are
written so that they cannot: every attribute carries an explicit ``MY.``/``TARGET.`` scope
(``symmetricMatch`` does not look an unscoped name up in TARGET after MY, as matchmaking does),
and the owner check is ``member(x, {...})``, not ``stringListMember()`` (which ``classad2``
evaluates to ERROR).  The one step not done by HTCondor itself is running the schedd's
transform: the test checks that the transform prepends exactly ``ANNEX_JOB_REQUIREMENTS`` to
a targeted job's Requirements and does that itself.
"""
from __future__ import annotations

import os
from typing import Any

import classad2
import htcondor2
import pytest

from annexd.instance_config import routing, tarball
from annexd.launch.plan import AnnexPlan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS_FRAGMENT = os.path.join(ROOT, "config.d", "85annex-jobs")
TRUST_DOMAIN = "pool.example.org"

#: condor_q -long, trimmed to what matching reads (and a few lines for the look of it).
JOB = """\
ClusterId = {cluster}
ProcId = 0
MyType = "Job"
TargetType = "Machine"
Owner = "{owner}"
User = "{owner}@{domain}"
JobUniverse = 5
Cmd = "/home/{owner}/simulate"
RequestCpus = 1
RequestMemory = 2048
DiskUsage = 1
RequestDisk = DiskUsage
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && \
(TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
{extra}"""

#: condor_status -long of one slot; Start is the START its configuration gives it.
SLOT = """\
MyType = "Machine"
TargetType = "Job"
Name = "slot1@{host}"
Machine = "{host}"
Arch = "X86_64"
OpSys = "LINUX"
Cpus = 2
Memory = 7680
Disk = 30000000
HasFileTransfer = true
AuthenticatedIdentity = "{identity}"
AuthenticationMethod = "{method}"
Start = {start}
WithinResourceLimits = (MY.Cpus > 0 && TARGET.RequestCpus <= MY.Cpus && MY.Memory > 0 && \
TARGET.RequestMemory <= MY.Memory && MY.Disk > 0 && TARGET.RequestDisk <= MY.Disk)
Requirements = START && (WithinResourceLimits)
{extra}"""


@pytest.fixture
def config(condor_config):
    """Read HTCondor configuration text with the real parser; returns param()'s view."""
    def read(text: str) -> Any:
        condor_config(f"TRUST_DOMAIN = {TRUST_DOMAIN}\n{text}")
        return htcondor2.param
    return read


def plan_for(annex: str, owners: tuple[str, ...]) -> AnnexPlan:
    return AnnexPlan(annex_id=annex, annex_type="spot-fleet", owner_uid=1000,
                     region="us-east-1", lease_function_arn="arn", lease_end=0, bucket="b",
                     client_token=f"{annex}_t", rule_schedule="rate(1 minute)",
                     launch_request={}, collector_host="cm.pool.example.org", owners=owners,
                     pool_auth="minted")


def annex_slot(config, annex: str, owners: tuple[str, ...], identity: str | None = None,
               owner: str = "alice") -> classad2.ClassAd:
    """A slot of ``annex``, its START as HTCondor reads the annex's generated config, its
    AuthenticatedIdentity its minted token's subject (ANNEX_TOKEN_IDENTITY's default)."""
    start = config(tarball.annex_config(plan_for(annex, owners)))["START"]
    identity = identity or f"{annex}.{owner}@annex.{TRUST_DOMAIN}"
    text = SLOT.format(host=f"ip-10-0-0-{len(annex)}.ec2.internal", identity=identity,
                       method="IDTOKENS", start=start,
                       extra=f'AnnexName = "{annex}"\nIsAnnex = true\n')
    return parse(text)


def pool_slot(config) -> classad2.ClassAd:
    """One of the pool's own slots: no annex configuration, the default START."""
    return parse(SLOT.format(host="node1.pool.example.org", method="PASSWORD",
                             identity=f"condor_pool@{TRUST_DOMAIN}", start=config("")["START"],
                             extra=""))


def parse(text: str) -> classad2.ClassAd:
    [ad] = list(classad2.parseAds(text, classad2.ParserType.Old))
    return ad


def submitted(config, owner: str = "alice", **attrs: str) -> classad2.ClassAd:
    """The job as the schedd holds it after submit: condor_submit's ad, then 85annex-jobs'
    transform when its REQUIREMENTS select the job."""
    extra = "".join(f"{name} = {value}\n" for name, value in attrs.items())
    job = parse(JOB.format(cluster=len(extra) + 1, owner=owner, domain=TRUST_DOMAIN,
                           extra=extra))
    with open(JOBS_FRAGMENT, encoding="utf-8") as handle:
        param = config(handle.read())
    transform = param["JOB_TRANSFORM_AnnexTarget"]
    assert "AnnexTarget" in param["JOB_TRANSFORM_NAMES"].split()
    added = param["ANNEX_JOB_REQUIREMENTS"]
    select = transform.splitlines()[0]
    assert select == "REQUIREMENTS TargetAnnexName =!= undefined"
    if classad2.ExprTree(select.split(None, 1)[1]).eval(job) is True:
        # param() expands $(MY.Requirements) to nothing: the transform's own line, as read.
        assert f"SET Requirements ({added}) && ()" in transform.splitlines()
        job["Requirements"] = classad2.ExprTree(f"({added}) && ({job.lookup('Requirements')})")
        job["JobMachineAttrs"] = "AnnexName"
    return job


def test_a_job_for_annex_x_runs_on_x_only(config):
    job = submitted(config, TargetAnnexName='"x"')
    assert job.symmetricMatch(annex_slot(config, "x", ("alice",)))
    assert not job.symmetricMatch(annex_slot(config, "y", ("alice",)))
    assert not job.symmetricMatch(pool_slot(config))
    assert job["JobMachineAttrs"] == "AnnexName"


def test_a_job_that_asks_for_no_annex_runs_on_none_but_still_in_the_pool(config):
    job = submitted(config)
    assert "Requirements" in job and "TargetAnnexName" not in job
    for annex in ("x", "y"):
        assert not job.symmetricMatch(annex_slot(config, annex, ("alice",)))
    assert job.symmetricMatch(pool_slot(config))


def test_a_may_use_aws_job_runs_on_any_of_its_owners_annexes_and_in_the_pool(config):
    job = submitted(config, MayUseAWS="true")
    assert job.symmetricMatch(annex_slot(config, "x", ("alice",)))
    assert job.symmetricMatch(annex_slot(config, "y", ("bob", "alice")))
    assert job.symmetricMatch(pool_slot(config))


@pytest.mark.parametrize("attrs", [{"TargetAnnexName": '"x"'}, {"MayUseAWS": "true"}])
def test_the_owner_check_holds_for_both_ways_of_asking(config, attrs):
    bobs = submitted(config, owner="bob", **attrs)
    assert not bobs.symmetricMatch(annex_slot(config, "x", ("alice",)))
    assert not bobs.symmetricMatch(annex_slot(config, "x", ("alice", "carol")))
    # Bob's own annex x (its token names him) takes his job.
    assert bobs.symmetricMatch(annex_slot(config, "x", ("bob",), owner="bob"))


def test_no_owner_widens_the_owner_never_the_gate(config):
    anyones = annex_slot(config, "x", ())
    assert anyones.lookup("Start") is not None
    assert submitted(config, owner="bob", MayUseAWS="true").symmetricMatch(anyones)
    assert not submitted(config, owner="bob").symmetricMatch(anyones)


def test_a_slot_that_only_claims_the_annex_name_does_not_get_the_job(config):
    """Someone else's annex x, or any machine advertising AnnexName = "x": its
    AuthenticatedIdentity (set by the collector) is not x's token's."""
    job = submitted(config, TargetAnnexName='"x"')
    for identity in (f"x.mallory@annex.{TRUST_DOMAIN}", f"condor_pool@{TRUST_DOMAIN}"):
        assert not job.symmetricMatch(annex_slot(config, "x", (), identity=identity))


def test_the_start_clause_is_one_function_and_needs_no_string_list_functions():
    clause = routing.start_expression(("alice", "bob"))
    assert clause == ('(MY.AnnexName == TARGET.TargetAnnexName || TARGET.MayUseAWS == true) '
                      '&& member(TARGET.Owner, {"alice", "bob"})')
    slot = classad2.ClassAd({"AnnexName": "x"})
    job = classad2.ClassAd({"Owner": "bob", "MayUseAWS": True})
    assert classad2.ExprTree(clause).simplify(slot, job).eval() is True
    assert "stringList" not in clause and "split(" not in clause
    with pytest.raises(ValueError, match="not a user name"):
        routing.start_expression(('alice"} || true || {"',))


def test_the_identity_check_can_be_turned_off_for_annexes_without_their_own_identity(config):
    """ANNEX_JOB_IDENTITY = TARGET.AuthenticatedIdentity, as the fragment says, for annexes
    that join with the pool password or an IDTOKEN file."""
    with open(JOBS_FRAGMENT, encoding="utf-8") as handle:
        text = handle.read() + "\nANNEX_JOB_IDENTITY = TARGET.AuthenticatedIdentity\n"
    added = config(text)["ANNEX_JOB_REQUIREMENTS"]
    job = parse(JOB.format(cluster=1, owner="alice", domain=TRUST_DOMAIN,
                           extra='TargetAnnexName = "x"\n'))
    job["Requirements"] = classad2.ExprTree(f"({added}) && ({job.lookup('Requirements')})")
    shared = annex_slot(config, "x", ("alice",), identity=f"condor_pool@{TRUST_DOMAIN}")
    assert job.symmetricMatch(shared)
    assert not job.symmetricMatch(annex_slot(config, "y", ("alice",)))
