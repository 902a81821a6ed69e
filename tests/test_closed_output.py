"""A closed pipe is not an error: every program ends as coreutils do when its reader goes.

``condor_annexd -help | head -1`` ended with a BrokenPipeError traceback and status 1.  Each
program here writes into a pipe whose reading end is already closed (deterministic: the first
write fails), and must end by SIGPIPE, as ``seq`` or ``cat`` do (the shell's status 141), with
nothing on standard error.
"""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from annex_ec2.closedpipe import quiet_when_output_closes
from localaws.pool import script

PROGRAMS = {
    "condor_annex -help": [script("condor_annex"), "-help"],
    "condor_annex -version": [script("condor_annex"), "-version"],
    "condor_annexd -help": [script("condor_annexd"), "-help"],
    "condor_annexd -version": [script("condor_annexd"), "-version"],
    "condor_annex_ec2 -help": [script("condor_annex_ec2"), "-help"],
    "condor_annex_role_template": [script("condor_annex_role_template"), "my-bucket",
                                   "us-east-1", "nightly"],
    "condor_annex.manual -markdown": [script("python"), "-m", "condor_annex.manual",
                                      "-markdown", "options", "condor_annex"],
    "knobref -markdown": [script("python"), "-m", "annexd.config.knobref", "-markdown"],
}

#: argparse writes its own -help and drops what it cannot write (``_print_message`` ignores
#: OSError), then exits 0: quiet too, but not by SIGPIPE.
QUIET_STATUS = {"condor_annex_ec2 -help": 0}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_program_whose_output_is_closed_ends_quietly_by_sigpipe(name):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the program writes a byte
    try:
        result = subprocess.run(PROGRAMS[name], stdout=write_end, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == QUIET_STATUS.get(name, -signal.SIGPIPE)


@pytest.mark.parametrize("name", ["condor_annex -help", "condor_annexd -version"])
def test_the_same_program_with_a_reader_prints_and_succeeds(name):
    result = subprocess.run(PROGRAMS[name], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() and result.stderr == ""


def test_a_broken_pipe_elsewhere_is_still_an_error():
    """Only a closed standard output is quiet: a socket's broken pipe (the daemon's) is
    raised as before, for the program to report."""
    @quiet_when_output_closes
    def talks_to_a_gone_daemon() -> int:
        raise BrokenPipeError(32, "Broken pipe")
    with pytest.raises(BrokenPipeError):
        talks_to_a_gone_daemon()
