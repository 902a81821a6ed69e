"""moto's server, run as ``python -m moto.server`` runs it, less two wastes on every request.

* moto's dispatcher asks ``moto.backends.list_of_moto_modules()`` on each request whether the
  request's host names a service; that function lists moto's package directory and stats
  each of its 200-odd entries, every time: 6.5% of the emulator's CPU in the suite (py-spy).
* Each response class lists its own methods (``inspect.getmembers``, sorted, of a class of
  hundreds of methods for EC2) on each request, to tell whether the action is one of them:
  about 6% more.

Neither answer can change while the server runs (the package's directories, the classes'
methods), so each is taken once and the server answered from it: the same names for the
same requests.  docs/testing.md, "On a slower machine".

It also leaves out werkzeug's access log, a line per request ("POST / 200": no action, no
answer) formatted and written under a lock: 4% of the emulator's CPU in the suite.
``ANNEX_MOTO_ACCESS_LOG=1`` puts it back.  Errors are logged as before.

Usage: ``python -m localaws.moto_main -H 127.0.0.1 -p PORT`` (moto.server's own options).
"""
from __future__ import annotations

import functools
import os
from typing import Iterable


def listed_once() -> None:
    """Make ``moto.backends.list_of_moto_modules`` answer from one listing, and each
    response class's method names be listed once."""
    from moto import backends
    from moto.core import responses

    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> Iterable[str]:
        return modules

    backends.list_of_moto_modules = list_of_moto_modules
    method_names = responses.method_names_from_class

    @functools.lru_cache(maxsize=None)
    def method_names_from_class(clazz: object) -> frozenset[str]:
        return frozenset(method_names(clazz))

    responses.method_names_from_class = method_names_from_class


def without_access_log() -> None:
    """werkzeug's request handler logs no line per request (errors still go to the log)."""
    from werkzeug import serving

    def log_request(self: serving.WSGIRequestHandler, code: int | str = "-",
                    size: int | str = "-") -> None:
        del self, code, size

    serving.WSGIRequestHandler.log_request = log_request  # type: ignore[method-assign]


def main() -> None:
    listed_once()
    if os.environ.get("ANNEX_MOTO_ACCESS_LOG") != "1":
        without_access_log()
    from moto import server

    server.main()


if __name__ == "__main__":
    main()
