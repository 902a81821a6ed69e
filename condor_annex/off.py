"""condor_annex -annex-name NAME -off: end an annex now, as its lease would."""
from __future__ import annotations

from typing import Any

from annexd.config import knobs

from .command import EXIT_OK, Command, annex_request, wants_progress
from annexd.usage.options import UsageError

class Off(Command):
    """End an annex now: what its lease function would do at expiry."""

    usage = "condor_annex -annex-name NAME -off"
    flags = ("off", "annex_name", "region", "access_key_file", "secret_key_file", "yes")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if positionals or not values.get("annex_name"):
            raise UsageError(f"usage: {self.usage}")
        return wants_progress(annex_request("off", values, settings))

    def progress(self, text: str) -> None:
        self.steps_at_terminal(text)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        if result.get("already_ended"):
            print(f"Annex {result['AnnexID']} had already ended.")
            return EXIT_OK
        done = [f"ended {len(result['cancelled_fleets'])} fleet(s)",
                f"terminated {len(result['terminated_instances'])} more instance(s)",
                "removed its lease rule" if result["deleted_rule"] else "its rule was gone",
                "its config object is deleted" if result["deleted_config"]
                else "its config object could not be deleted (no bucket)"]
        print(f"Annex {result['AnnexID']} is off: {', '.join(done)}.")
        return EXIT_OK
