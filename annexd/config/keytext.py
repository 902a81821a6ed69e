"""Whether the text of a key file is a bare AWS key, said without ever repeating the text.

A key file that is not one bare key -- most often the whole ``~/.aws/credentials`` file named
by mistake -- must be refused before its text reaches botocore: botocore's error for a key it
cannot put into a request header prints the header, and with it the file's every secret
(issue 18, finding 7).  So the check runs on both sides of the socket (condor_annex for the
user's files, the daemon for its own and for every request), and what it says names the
problem only.

Shared by daemon and CLI: stdlib only.
"""
from __future__ import annotations

import re

#: An AWS access key ID or secret key: one word of printable ASCII.  AWS's own keys are
#: letters, digits and ``/+=``; other S3/EC2 services use other characters, never spaces.
BARE_KEY = r"^[!-~]{1,1024}\Z"
_BARE = re.compile(BARE_KEY)
_SHARED_FILE = re.compile(r"^\s*\[[^\]\n]*\]|aws_(access_key_id|secret_access_key|session_token)"
                          r"\s*=", re.MULTILINE | re.IGNORECASE)


def problem(text: str) -> str | None:
    """What is wrong with ``text`` (already stripped) as one key, or None if it is one.

    The answer never contains any of ``text``.
    """
    if _BARE.match(text):
        return None
    if _SHARED_FILE.search(text):
        return ("not a bare key: it looks like an AWS credentials file (~/.aws/credentials "
                "format); put the key alone in its own file")
    if any(character.isspace() for character in text):
        return "not a bare key: it holds more than one word or line; put the key alone in it"
    if len(text) > 1024:
        return "not a bare key: longer than 1024 characters"
    return "not a bare key: it holds control or non-ASCII characters"
