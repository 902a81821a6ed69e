"""condor_annex -setup and -check-setup: a region's CloudFormation stacks and the user's knobs."""
from __future__ import annotations

import os
import sys
from typing import Any

from annexd.config import knobs

from . import userconfig
from .create import bucket, join_defaults
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
    """Check, one line each, what a create in the region would use: the credentials, the
    bucket, the lease function, the instance profile, the security groups, the signing key
    and the setup's stacks (annexd.commands.checksetup)."""

    usage = "condor_annex [-aws-region R] -check-setup"
    flags = ("check_setup", "region", "access_key_file", "secret_key_file")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if positionals:
            raise UsageError("-check-setup takes no arguments")
        self.region = settings.region
        self.problems: list[str] = []
        creds = None
        try:  # the keys a create would use: flags, knobs, else ~/.condor/{public,private}KeyFile
            files = key_files(values, settings)
            creds = credentials(files)
            self.keys = "no key files (condor_annexd's own identity)" if files is None else \
                "condor_annexd's own identity (FROM INSTANCE)" if files[0] == FROM_INSTANCE \
                else f"{files[0]}, {files[1]}"
        except (InputError, UsageError) as error:
            self.problems.append(f"credentials: {error}")
        request = region_request("check-setup", creds, settings)
        uses = {**join_defaults(settings), **bucket(settings)}  # as a create would send them
        if settings.lease_function_arn:
            uses["lease_function_arn"] = settings.lease_function_arn
        request["uses"] = uses
        return request

    def failed(self, reply: dict[str, Any]) -> int:
        """The daemon could not check AWS (no keys, say): still report what we found here."""
        return self.show({"checks": [{"what": "credentials", "ok": False,
                                      "text": reply["error"]["message"]}]}, None)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings | None) -> int:
        lines = [(False, problem) for problem in self.problems]
        for line in result["checks"]:
            text = line["text"]
            if line["what"] == "credentials" and line["ok"]:
                text = f"{self.keys}: {text}"
            lines.append((line["ok"], f"{line['what']}: {text}"))
        for ok, text in lines:
            print(f"condor_annex: {'ok' if ok else 'problem'}: {text}")
        if not all(ok for ok, _ in lines):
            return EXIT_SETUP_PROBLEMS
        print(f"Your setup of {self.region} looks OK.")
        return EXIT_OK
