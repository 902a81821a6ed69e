"""What condor_annex says about itself beyond its flags: the prose and exit statuses of its
manual page, condor_annex(1).  ``cli`` adds its usage lines and flag table (see
:mod:`condor_annex.manual`), so ``-help`` and the page are one source."""
from __future__ import annotations

from .command import (EXIT_CODES, EXIT_DAEMON, EXIT_DECLINED, EXIT_INPUT, EXIT_OK,
                      EXIT_SETUP_PROBLEMS, EXIT_USAGE)
from annexd.usage.manpage import Page, Section
from annexd.usage.options import Option

EXIT_STATUS = (
    (EXIT_OK, "success"),
    (EXIT_USAGE, "usage error: a flag is unknown, ambiguous, malformed or cannot be used with "
                 "the others"),
    (EXIT_INPUT, "an input file cannot be read or parsed, or a secret key file is not private"),
    (EXIT_DAEMON, "condor_annexd cannot be reached, or stayed busy for 5 minutes"),
    (EXIT_CODES["invalid-request"], "condor_annexd refused the request: invalid input, no "
                                    "credentials, the annex exists or belongs to another user"),
    (EXIT_CODES["aws"], "AWS failed and everything created was rolled back"),
    (EXIT_CODES["rollback-incomplete"], "AWS failed and rolling back was incomplete: the error "
                                        "names what may be left, and the lease will end it"),
    (EXIT_CODES["internal"], "internal error in condor_annexd (its log says more)"),
    (EXIT_CODES["interrupted"], "condor_annexd shut down mid-way; the lease is in force: run "
                                "the same command again to finish"),
    (EXIT_SETUP_PROBLEMS, "-check-setup found problems (one line each, with its fix)"),
    (EXIT_DECLINED, "you answered no to the cost question; nothing was started"),
)

DESCRIPTION = (
    "condor_annex rents AWS EC2 capacity for an HTCondor pool, in bulk, under a lease that AWS "
    "itself enforces. It is the client of condor_annexd(8), the daemon that does the work: "
    "condor_annex reads your files (the fleet config, your AWS key files, your HTCondor "
    "configuration), sends one request over the daemon's Unix socket and prints the result.",
    "For every annex the daemon first puts the lease in force (an EventBridge rule that calls "
    "the lease function every minute), then uploads the annex's HTCondor configuration, and "
    "only then launches a Spot Fleet request, an EC2 Fleet or on-demand instances. When the "
    "lease ends, the lease function, running in AWS, ends everything of the annex, whether or "
    "not the submit machine is up.",
    "Flags follow HTCondor's convention: one dash, and any unique prefix works (-public for "
    "-public-key-file); an ambiguous prefix is refused with the candidates.",
)

COMMANDS = Section("Commands", (
    ("create (the default)",
     "With a fleet config file (- reads standard input): a Spot Fleet config as the EC2 "
     "console exports it (bare or wrapped in SpotFleetRequestConfig, with launch "
     "specifications or launch templates) or an EC2 Fleet config (what aws ec2 create-fleet "
     "--cli-input-json takes). With no file and -count N: N on-demand instances. Prints the "
     "fleet or instance IDs on standard output; notices and the lease end go to standard "
     "error. At a terminal it first shows the worst-case cost and asks for confirmation "
     "(-yes skips that). With the -annex-name of a live annex of yours, paid the same way and "
     "of the same kind: adds the instances to it, under its lease (which is not moved: "
     "-lease-duration is not used; move it as below)."),
    ("-annex-name NAME -lease-duration SECONDS (or -duration HOURS)",
     "With no config file and no -count: move the lease end of a running annex."),
    ("-status", "List your live annexes in every region (root: everyone's), as a table, "
                "JSON (-json) or ClassAds (-classad)."),
    ("-annex-name NAME -off", "End that annex now, as its lease would."),
    ("-setup", "Once per region: create or update the four CloudFormation stacks (lease "
               "function, configuration bucket, instance profile, security group) with your "
               "keys, and write their outputs into your HTCondor user configuration file."),
    ("-check-setup", "Check that region's setup: one line per problem with its fix."),
))

FILES = Section("Files", (
    ("~/.condor/user_config", "your HTCondor configuration (USER_CONFIG_FILE), where -setup "
                              "writes a marked block of knobs per region"),
    ("~/.condor/publicKeyFile, ~/.condor/privateKeyFile",
     "-setup's default AWS key files; the secret key file must be yours, mode 600"),
    ("$(LOCK)/annexd.sock", "condor_annexd's socket (ANNEXD_SOCKET)"),
))

ENVIRONMENT = Section("Environment", (
    ("CONDOR_CONFIG", "the HTCondor configuration to read (default /etc/condor/condor_config); "
                      "every knob condor_annex reads comes through it"),
))

SEE_ALSO = ("condor_annexd(8)", "condor_config_val(1)", "condor_status(1)",
            "the README of condor-annexd (knobs, setup, troubleshooting)")


def page(usage: tuple[str, ...], options: tuple[Option, ...]) -> Page:
    """condor_annex(1), from the usage lines and flag table the command line is parsed with."""
    return Page(name="condor_annex", section=1,
                summary="create and manage leased AWS EC2 annexes for an HTCondor pool",
                usage=usage, options=tuple(o for o in options if not o.refused),
                exit_status=EXIT_STATUS,
                description=DESCRIPTION, sections=(COMMANDS, FILES, ENVIRONMENT),
                see_also=SEE_ALSO)
