"""Create in the emulator what ``condor_annex -setup`` creates in a real account."""
from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable

import boto3

from annexd.aws import leasecode

from .wait import wait_for

CFN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cfn")

LEASE_FUNCTION_NAME = "HTCondorAnnex-LeaseFunction"
FLEET_ROLE_ARN = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"

_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}


#: What -setup's instance-profile and security-group stacks give instances to join with, as
#: every test pool's site configuration names them (localaws.pool): made by
#: :func:`create_join_resources` in each emulator the tests use.  IAM ARNs follow from the
#: name; the group's ID from moto's seeded ID generator (JOIN_SEED).
JOIN_PROFILE_NAME = "HTCondorAnnex-InstanceProfile-JoinProfile"
JOIN_PROFILE_ARN = f"arn:aws:iam::123456789012:instance-profile/{JOIN_PROFILE_NAME}"
JOIN_ROLE_NAME = "HTCondorAnnex-InstanceProfile-JoinRole"
JOIN_GROUP_NAME = "HTCondorAnnex-SecurityGroup"
JOIN_SEED = 9618
JOIN_GROUP_ID = "sg-9772fa54389dc5665"


def create_join_resources(ec2: Any, iam: Any, seed: Callable[[int], None]) -> tuple[str, str]:
    """The instance profile and security group every test pool's configuration names;
    returns (profile ARN, group ID).  ``seed`` seeds the emulator's IDs (MotoServer.seed)."""
    iam.create_role(RoleName=JOIN_ROLE_NAME, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}))
    profile = iam.create_instance_profile(InstanceProfileName=JOIN_PROFILE_NAME)
    iam.add_role_to_instance_profile(InstanceProfileName=JOIN_PROFILE_NAME,
                                     RoleName=JOIN_ROLE_NAME)
    arn = profile["InstanceProfile"]["Arn"]
    assert arn == JOIN_PROFILE_ARN, f"the emulator's ARNs changed: set JOIN_PROFILE_ARN = {arn}"
    return arn, create_join_group(ec2, seed)


def create_join_group(ec2: Any, seed: Callable[[int], None]) -> str:
    """The security group of create_join_resources, in ``ec2``'s region (the same ID in
    every region: IDs come from the seeded generator)."""
    ec2.describe_vpcs()  # moto makes the default VPC (and its IDs) on the first EC2 call
    seed(JOIN_SEED)
    group = ec2.create_security_group(GroupName=JOIN_GROUP_NAME,
                                      Description="HTCondor annex instances")["GroupId"]
    assert group == JOIN_GROUP_ID, f"the emulator's IDs changed: set JOIN_GROUP_ID = {group}"
    return group


_CLIENTS: dict[tuple[str, str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def client(service: str, endpoint_url: str, region: str) -> Any:
    """A client of the emulator with its test keys, one per service, endpoint and region for
    the process: botocore clients are thread-safe and keep nothing of a call, and making
    one cost about 20 ms, which nearly every test paid six times (the ``aws`` fixture)."""
    key = (service, endpoint_url, region)
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = boto3.client(service, endpoint_url=endpoint_url,
                                         region_name=region, aws_access_key_id="testing",
                                         aws_secret_access_key="testing")
        return _CLIENTS[key]


def create_bucket(s3: Any, name: str, region: str) -> None:
    extra = {} if region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, **extra)


def deploy_lease_function(iam: Any, lambda_: Any, name: str = LEASE_FUNCTION_NAME) -> str:
    """Create the lease function from lambda/lease.py; returns its ARN."""
    role = iam.create_role(RoleName=f"{name}-Role",
                           AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST))
    reply = lambda_.create_function(
        FunctionName=name, Runtime="python3.12", Role=role["Role"]["Arn"],
        Handler="lease.handler", Code={"ZipFile": leasecode.package()}, Timeout=60)
    return reply["FunctionArn"]


#: The launch template the examples' launch-template configs name (a site makes its own: an
#: image with HTCondor and condor_annex_ec2, and the -setup instance profile).
WORKER_TEMPLATE = "htcondor-annex-worker"
WORKER_IMAGE = "ami-1e749f67"  # one of moto's built-in images (validation is on)


def create_worker_template(ec2: Any, profile_arn: str = JOIN_PROFILE_ARN,
                           group_id: str | None = None) -> str:
    """Create the examples' launch template (if missing), naming -setup's instance profile
    and security group as a site's must (by default the group of create_join_resources in
    ``ec2``'s region, made if missing); returns its ID."""
    found = ec2.describe_launch_templates(Filters=[
        {"Name": "launch-template-name", "Values": [WORKER_TEMPLATE]}])["LaunchTemplates"]
    if found:
        return found[0]["LaunchTemplateId"]
    if group_id is None:
        named = ec2.describe_security_groups(Filters=[
            {"Name": "group-name", "Values": [JOIN_GROUP_NAME]}])["SecurityGroups"]
        group_id = named[0]["GroupId"] if named else ec2.create_security_group(
            GroupName=JOIN_GROUP_NAME, Description="HTCondor annex instances")["GroupId"]
    return ec2.create_launch_template(LaunchTemplateName=WORKER_TEMPLATE, LaunchTemplateData={
        "ImageId": WORKER_IMAGE, "InstanceType": "m5.large",
        "IamInstanceProfile": {"Arn": profile_arn}, "SecurityGroupIds": [group_id],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [
            {"Key": "project", "Value": "nightly-builds"}]}]})["LaunchTemplate"][
        "LaunchTemplateId"]


def instance_role_credentials(url: str, region: str, instance_id: str) -> dict[str, str]:
    """The credentials EC2 hands an instance through its metadata service, as environment
    variables: its instance profile's role (from DescribeInstances), in a session named
    after the instance, so that its ``aws:userid`` is ``<role-id>:<instance-id>`` as on
    EC2 (moto's STS makes the ID the same way)."""
    ec2, iam, sts = (client(name, url, region) for name in ("ec2", "iam", "sts"))
    [instance] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"]
    profile = instance["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
    role = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"][0]
    made = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=instance_id)["Credentials"]
    return {"AWS_ACCESS_KEY_ID": made["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"],
            "AWS_SESSION_TOKEN": made["SessionToken"]}


def tag_fleet_instances_as_aws_does(ec2: Any, fleet_id: str) -> list[str]:
    """Put on a fleet's instances the tag AWS puts on every fleet instance, which moto does
    not: ``aws:ec2spot:fleet-request-id`` (Spot Fleet) or ``aws:ec2:fleet-id`` (EC2 Fleet).
    Returns the instance IDs.  (moto accepts ``aws:`` keys from CreateTags; AWS would not.)"""
    if fleet_id.startswith("sfr-"):
        key = "aws:ec2spot:fleet-request-id"
        found = ec2.describe_spot_fleet_instances(SpotFleetRequestId=fleet_id)
    else:
        key = "aws:ec2:fleet-id"
        found = ec2.describe_fleet_instances(FleetId=fleet_id)
    ids = [instance["InstanceId"] for instance in found["ActiveInstances"]]
    if ids:
        ec2.create_tags(Resources=ids, Tags=[{"Key": key, "Value": fleet_id}])
    return ids


def create_instance_profile_stack(cloudformation: Any, iam: Any, bucket: str) -> tuple[str, str]:
    """The setup's instance profile stack (cfn/instance-profile.yaml), as -setup makes it;
    returns (instance profile ARN, its role's ARN)."""
    name = "HTCondorAnnex-InstanceProfile"
    with open(os.path.join(CFN, "instance-profile.yaml"), encoding="utf-8") as handle:
        cloudformation.create_stack(
            StackName=name, TemplateBody=handle.read(), Capabilities=["CAPABILITY_IAM"],
            Parameters=[{"ParameterKey": "S3BucketName", "ParameterValue": bucket}])
    stack = wait_for(lambda: cloudformation.describe_stacks(StackName=name)["Stacks"][0],
                     "the instance profile stack",
                     until=lambda found: found["StackStatus"] == "CREATE_COMPLETE")
    profile = stack["Outputs"][0]["OutputValue"]
    found = iam.get_instance_profile(InstanceProfileName=profile.rsplit("/", 1)[1])
    return profile, found["InstanceProfile"]["Roles"][0]["Arn"]
