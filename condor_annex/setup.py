"""condor_annex -setup and -check-setup: a region's CloudFormation stacks and the user's knobs."""
from __future__ import annotations

import os
import sys
from typing import Any

from annexd.config import knobs
from annexd.config.hints import setup_command

from . import userconfig
from .command import (DEFAULT_KEY_FILES, EXIT_INPUT, EXIT_OK, EXIT_SETUP_PROBLEMS, FROM_INSTANCE,
                      Command, credentials, key_files, region_request)
from .inputs import InputError
from annexd.usage.options import UsageError

class Setup(Command):
    """Create or update the region's stacks, then record their outputs as knobs."""

    usage = "condor_annex [-aws-region R] -setup [ACCESS_KEY_FILE SECRET_KEY_FILE | FROM INSTANCE]"
    flags = ("setup", "region", "access_key_file", "secret_key_file")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if len(positionals) not in (0, 2):
            raise UsageError("-setup takes no arguments or two: ACCESS_KEY_FILE SECRET_KEY_FILE"
                             f" (or {FROM_INSTANCE})")
        if [word.upper() for word in positionals] == FROM_INSTANCE.split():
            self.files = (FROM_INSTANCE, FROM_INSTANCE)
        else:
            files = (tuple(positionals) if positionals else key_files(values, settings)) \
                or tuple(os.path.expanduser(f) for f in DEFAULT_KEY_FILES)
            self.files = files if files[0] == FROM_INSTANCE else \
                tuple(os.path.abspath(f) for f in files)
        creds = credentials(self.files)
        print(f"Setting up region {settings.region}; this takes a few minutes on AWS.",
              flush=True)
        return region_request("setup", creds, settings)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        prefix = knobs.region_local_name(result["region"]) + "."
        outputs = result["outputs"]
        values = {
            prefix + "ANNEX_DEFAULT_S3_BUCKET": outputs["S3BucketName"],
            prefix + "ANNEX_DEFAULT_LEASE_FUNCTION_ARN": outputs["LeaseFunctionARN"],
            prefix + "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN": outputs["InstanceProfileARN"],
            prefix + "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS": outputs["SecurityGroupID"],
            prefix + "ANNEX_DEFAULT_ACCESS_KEY_FILE": self.files[0],
            prefix + "ANNEX_DEFAULT_SECRET_KEY_FILE": self.files[1],
        }
        path = settings.user_config_file
        try:
            changed, kept = userconfig.update(path, result["region"], values)
        except OSError as error:
            print(f"condor_annex: error: setup succeeded but {path} cannot be written "
                  f"({error.strerror}); add these lines to your HTCondor config yourself:",
                  file=sys.stderr)
            print("\n".join(f"{knob} = {value}" for knob, value in values.items()))
            return EXIT_INPUT
        for knob in kept:
            print(f"condor_annex: notice: keeping your own {knob} in {path}", file=sys.stderr)
        print(f"Setup successful; {'updated' if changed else 'nothing to change in'} {path}.")
        return EXIT_OK


class CheckSetup(Command):
    """Check the region's stacks, the lease function's code, the knobs and the key files."""

    usage = "condor_annex [-aws-region R] -check-setup"
    flags = ("check_setup", "region", "access_key_file", "secret_key_file")
    REQUIRED = ("ANNEX_DEFAULT_S3_BUCKET", "ANNEX_DEFAULT_LEASE_FUNCTION_ARN",
                "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN", "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS",
                "ANNEX_DEFAULT_ACCESS_KEY_FILE", "ANNEX_DEFAULT_SECRET_KEY_FILE")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if positionals:
            raise UsageError("-check-setup takes no arguments")
        self.region = settings.region
        self.problems = [f"{knob} is not set for {settings.region}: run "
                         f"{setup_command(settings.region)}"
                         for knob in self.REQUIRED if not knobs.raw(knob, settings.region)]
        creds = None
        try:
            creds = credentials(key_files(values, settings))
        except (InputError, UsageError) as error:
            self.problems.append(f"{error}")
        return region_request("check-setup", creds, settings)

    def failed(self, reply: dict[str, Any]) -> int:
        """The daemon could not check AWS (no keys, say): still report what we found here."""
        return self.show({"problems": [reply["error"]["message"]]}, None)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings | None) -> int:
        problems = self.problems + result["problems"]
        for problem in problems:
            print(f"condor_annex: problem: {problem}")
        if problems:
            return EXIT_SETUP_PROBLEMS
        print(f"Your setup of {self.region} looks OK.")
        return EXIT_OK
