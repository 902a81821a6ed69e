"""condor_annex -annex-name NAME -lease-duration S (or -duration H): move a lease's end."""
from __future__ import annotations

import time
from typing import Any

from annexd.config import knobs

from .command import EXIT_OK, Command, annex_request, lease_seconds

class Extend(Command):
    """Move an existing annex's lease end (every other lease setting is kept)."""

    usage = "condor_annex -annex-name NAME (-lease-duration SECONDS | -duration HOURS)"
    flags = ("annex_name", "lease_duration", "duration", "region", "access_key_file",
             "secret_key_file")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        return annex_request("extend", values, settings, lease_duration=lease_seconds(values))

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        end = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(result["lease_end"]))
        if result.get("lease_restored"):
            print(f"Lease restored: annex {result['annex_id']} had lost its lease rule; it "
                  f"is back, and ends {end}.")
        else:
            print(f"Lease updated: annex {result['annex_id']} now ends {end}.")
        return EXIT_OK
