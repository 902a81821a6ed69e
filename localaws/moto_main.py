"""moto's server, run as ``python -m moto.server`` runs it, less one waste on every request.

moto's dispatcher asks ``moto.backends.list_of_moto_modules()`` on each request whether the
request's host names a service; that function lists moto's package directory and stats each
of its 200-odd entries, every time.  py-spy put it at 6.5% of the emulator's CPU in the suite
(docs/testing.md, "Where it stands").  The listing cannot change while the server runs, so
it is taken once here and the server answered from it: the same names in the same order,
for the same requests.  Nothing else of moto is touched.

Usage: ``python -m localaws.moto_main -H 127.0.0.1 -p PORT`` (moto.server's own options).
"""
from __future__ import annotations

from typing import Iterable


def listed_once() -> None:
    """Make ``moto.backends.list_of_moto_modules`` answer from one listing."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> Iterable[str]:
        return modules

    backends.list_of_moto_modules = list_of_moto_modules


def main() -> None:
    listed_once()
    from moto import server

    server.main()


if __name__ == "__main__":
    main()
