"""The original condor_annex's four setup stacks, as its ``-setup`` made them, for moto.

Shaped after HTCondor's ``src/annex/setup/generate-bucket``, ``generate-template``,
``generate-role`` and ``generate-security-group`` (version 11 templates): the same stack
names, descriptions, parameters (``S3BucketName``, ``S3FileName``), logical resource IDs and
outputs, JSON like theirs.  Properties are trimmed to what CloudFormation needs to make each
resource; nothing here is the original's code.
"""
from __future__ import annotations

import io
import json
import zipfile
from typing import Any

#: Where the original's templates fetched the lease functions' code (condor-annex-<region>).
CODE_BUCKET = "condor-annex-us-east-1"
CODE_KEYS = ("sfr-lease-11.zip", "odi-lease-11.zip", "check-connectivity-11.zip")

ASSUME = {"lambda": {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["sts:AssumeRole"],
    "Principal": {"Service": ["lambda.amazonaws.com"]}}]},
          "ec2": {"Version": "2012-10-17", "Statement": [{
              "Effect": "Allow", "Action": ["sts:AssumeRole"],
              "Principal": {"Service": ["ec2.amazonaws.com"]}}]}}
PARAMETERS = {"S3BucketName": {"Type": "String"},
              "S3FileName": {"Type": "String", "Default": "config-*.tar.gz"}}
OBJECT = {"Fn::Join": ["", ["arn:aws:s3:::", {"Ref": "S3BucketName"}, "/",
                            {"Ref": "S3FileName"}]]}


def _function(handler: str, key: str, runtime: str = "nodejs18.x") -> dict[str, Any]:
    return {"Type": "AWS::Lambda::Function", "DependsOn": "LeaseFunctionRole",
            "Properties": {"Role": {"Fn::GetAtt": ["LeaseFunctionRole", "Arn"]},
                           "Runtime": runtime, "Timeout": 60, "Handler": handler,
                           "Code": {"S3Bucket": CODE_BUCKET, "S3Key": key}}}


def _permission(function: str) -> dict[str, Any]:
    return {"Type": "AWS::Lambda::Permission", "DependsOn": function, "Properties": {
        "Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com",
        "FunctionName": {"Fn::GetAtt": [function, "Arn"]},
        "SourceArn": {"Fn::Join": [":", ["arn:aws:events", {"Ref": "AWS::Region"},
                                         {"Ref": "AWS::AccountId"}, "*"]]}}}


BUCKET = {"AWSTemplateFormatVersion": "2010-09-09",
          "Description": "HTCondorAnnex: Configuration Bucket",
          "Resources": {"ConfigurationBucket": {"Type": "AWS::S3::Bucket",
                                                "Properties": {"AccessControl": "Private"}}},
          "Outputs": {"S3BucketName": {"Value": {"Ref": "ConfigurationBucket"}}}}

LAMBDA = {"AWSTemplateFormatVersion": "2010-09-09",
          "Description": "HTCondor Annex: Lambda Functions",
          "Parameters": PARAMETERS,
          "Resources": {
              "ccFunctionRole": {"Type": "AWS::IAM::Role", "Properties": {
                  "AssumeRolePolicyDocument": ASSUME["lambda"]}},
              "LeaseFunctionRole": {"Type": "AWS::IAM::Role", "Properties": {
                  "AssumeRolePolicyDocument": ASSUME["lambda"],
                  "Policies": [{"PolicyName": "LambdaLeasePolicy", "PolicyDocument": {
                      "Version": "2012-10-17", "Statement": [
                          {"Effect": "Allow", "Resource": "*", "Action": [
                              "events:*", "ec2:CancelSpotFleetRequests",
                              "ec2:DescribeSpotFleetRequests", "ec2:DescribeInstances",
                              "ec2:TerminateInstances"]},
                          {"Effect": "Allow", "Action": ["s3:DeleteObject"],
                           "Resource": OBJECT}]}}]}},
              "sfrLeaseFunction": _function("sfr-lease.handler", CODE_KEYS[0]),
              "odiLeaseFunction": _function("odi-lease.handler", CODE_KEYS[1]),
              "ccFunction": {**_function("check-connectivity.condor_ping_handler",
                                         CODE_KEYS[2], "python3.8")},
              "sfrLeaseFunctionPermissions": _permission("sfrLeaseFunction"),
              "odiLeaseFunctionPermissions": _permission("odiLeaseFunction")},
          "Outputs": {
              "sfrLeaseFunctionARN": {"Value": {"Fn::GetAtt": ["sfrLeaseFunction", "Arn"]}},
              "odiLeaseFunctionARN": {"Value": {"Fn::GetAtt": ["odiLeaseFunction", "Arn"]}},
              "ccFunctionARN": {"Value": {"Fn::GetAtt": ["ccFunction", "Arn"]}}}}
LAMBDA["Resources"]["ccFunction"]["Properties"]["FunctionName"] = \
    "HTCondorAnnex-CheckConnectivity"

ROLE = {"AWSTemplateFormatVersion": "2010-09-09",
        "Description": "HTCondor Annex: Instance Profile",
        "Parameters": PARAMETERS,
        "Resources": {
            "InstanceConfigurationRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": ASSUME["ec2"],
                "Policies": [{"PolicyName": "Configuration", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow", "Action": ["s3:GetObject"],
                        "Resource": OBJECT}]}}]}},
            "InstanceConfigurationProfile": {"Type": "AWS::IAM::InstanceProfile",
                                             "Properties": {
                                                 "Path": "/",
                                                 "Roles": [{"Ref": "InstanceConfigurationRole"}]}}},
        "Outputs": {"InstanceProfileARN": {
            "Value": {"Fn::GetAtt": ["InstanceConfigurationProfile", "Arn"]}}}}

SECURITY_GROUP = {"AWSTemplateFormatVersion": "2010-09-09",
                  "Description": "HTCondorAnnex: Security Group",
                  "Resources": {"SecurityGroup": {"Type": "AWS::EC2::SecurityGroup",
                                                  "Properties": {
                      "GroupDescription": "Allow SSH and HTCondor from anywhere.",
                      "SecurityGroupIngress": [
                          {"IpProtocol": "tcp", "FromPort": "22", "ToPort": "22",
                           "CidrIp": "0.0.0.0/0"},
                          {"IpProtocol": "tcp", "FromPort": "9618", "ToPort": "9618",
                           "CidrIp": "0.0.0.0/0"}]}}},
                  "Outputs": {"SecurityGroupID": {
                      "Value": {"Fn::GetAtt": ["SecurityGroup", "GroupId"]}}}}

#: Stack name -> (template, whether it takes the bucket), in the original's order.
STACKS = {"HTCondorAnnex-ConfigurationBucket": (BUCKET, False),
          "HTCondorAnnex-LambdaFunctions": (LAMBDA, True),
          "HTCondorAnnex-InstanceProfile": (ROLE, True),
          "HTCondorAnnex-SecurityGroup": (SECURITY_GROUP, False)}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", "exports.handler = async () => 'original';\n")
    return buffer.getvalue()


def make(aws: Any) -> dict[str, str]:
    """Create the original's four stacks (as its -setup did, CAPABILITY_IAM, in order) in
    moto; returns their outputs merged, as its -setup's scratchpad held them."""
    aws.s3.create_bucket(Bucket=CODE_BUCKET)
    for key in CODE_KEYS:
        aws.s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=_zip())
    outputs: dict[str, str] = {}
    for name, (template, takes_bucket) in STACKS.items():
        parameters = ([{"ParameterKey": "S3BucketName",
                        "ParameterValue": outputs["S3BucketName"]}] if takes_bucket else [])
        aws.cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template),
                                        Parameters=parameters, Capabilities=["CAPABILITY_IAM"],
                                        OnFailure="DELETE")
        [stack] = aws.cloudformation.describe_stacks(StackName=name)["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack
        outputs.update({o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])})
    return outputs


def user_config_block(outputs: dict[str, str], key_files: tuple[str, str]) -> str:
    """What the original's -setup appended to ~/.condor/user_config (GenerateConfigFile)."""
    knobs = {"ANNEX_DEFAULT_S3_BUCKET": outputs["S3BucketName"],
             "ANNEX_DEFAULT_ODI_LEASE_FUNCTION_ARN": outputs["odiLeaseFunctionARN"],
             "ANNEX_DEFAULT_SFR_LEASE_FUNCTION_ARN": outputs["sfrLeaseFunctionARN"],
             "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN": outputs["InstanceProfileARN"],
             "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS": outputs["SecurityGroupID"],
             "ANNEX_DEFAULT_ODI_KEY_NAME": "HTCondorAnnex-KeyPair",
             "ANNEX_DEFAULT_ACCESS_KEY_FILE": key_files[0],
             "ANNEX_DEFAULT_SECRET_KEY_FILE": key_files[1]}
    lines = ["", "# Generated by condor-annex -setup for region us_east_1.",
             "ANNEX_DEFAULT_AWS_REGION = us-east-1"]
    lines += [f"us_east_1.{knob} = {value}" for knob, value in knobs.items()]
    lines += ["# For debugging:", "# ssh -i /home/u/.condor/HTCondorAnnex-KeyPair.us-east-1.pem"
              " ec2-user@<address>", ""]
    return "\n".join(lines) + "\n"
