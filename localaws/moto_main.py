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

And it keeps connections open between requests, as AWS's endpoints do (:func:`keep_alive`):
werkzeug's development server ends every connection after one answer, so each call of every
client (botocore's pool, in the tests, the daemons and the instance side) paid for a new
connection, a new server thread and werkzeug's 10 ms wait for stray bytes after each answer:
a quarter of the emulator's CPU per call, and a tenth of its callers'.

Usage: ``python -m localaws.moto_main -H 127.0.0.1 -p PORT`` (moto.server's own options).
"""
from __future__ import annotations

import functools
import os
import selectors
import threading
from typing import Any, Iterable


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


class _AnswerState(threading.local):
    """Per server thread: whether the answer being written keeps its connection open."""
    keeps_connection = False


_ANSWER = _AnswerState()


class _DiscardOnlyOnClose:
    """werkzeug's discarding of stray bytes, only after an answer that closes its connection.

    After each answer werkzeug reads whatever the client sends within 10 ms and throws it
    away: safe only because it closes every connection.  On a connection kept open those
    bytes are the client's next request, so there is nothing to discard (and nothing to wait
    for); after an answer that closes it, werkzeug's reading is kept, for the reason it has
    (the client sees the answer, not a reset).  It stands in for werkzeug's ``selectors``.
    """

    EVENT_READ = selectors.EVENT_READ

    class DefaultSelector:
        def __init__(self) -> None:
            self._selector = None if _ANSWER.keeps_connection else selectors.DefaultSelector()

        def register(self, fileobj: Any, events: int) -> None:
            if self._selector is not None:
                self._selector.register(fileobj, events)

        def select(self, timeout: float | None = None) -> list:
            return self._selector.select(timeout) if self._selector is not None else []

        def close(self) -> None:
            if self._selector is not None:
                self._selector.close()


def keep_alive() -> None:
    """werkzeug's request handler keeps a connection open after an answer, as HTTP/1.1 and
    AWS's endpoints do, whenever that is safe: the request's body was read to its end.

    werkzeug writes ``Connection: close`` into every answer because Python's http.server
    cannot tell where a request whose body was not read ends.  Here each body is read through
    a stream bounded by its ``Content-Length``; when the answer starts and that stream is
    at its end (or there was no body), the ``Connection: close`` is left out and the server
    thread waits for the connection's next request.  A body left unread, a chunked one, or a
    client asking to close gets werkzeug's answer unchanged.  Answers go out at once
    (TCP_NODELAY): headers and body are two writes, and Nagle's algorithm would hold the
    second back until the client acknowledges the first.
    """
    from werkzeug import serving
    from werkzeug.wsgi import LimitedStream

    handler = serving.WSGIRequestHandler
    handler.disable_nagle_algorithm = True
    handle_one_request = handler.handle_one_request
    make_environ, send_header = handler.make_environ, handler.send_header

    def one_request(self: serving.WSGIRequestHandler) -> None:
        # Only this request's body counts (an answer to a malformed request closes).
        _ANSWER.keeps_connection, self.annex_body = False, None
        handle_one_request(self)

    def bounded_environ(self: serving.WSGIRequestHandler) -> dict[str, Any]:
        environ = make_environ(self)
        if not environ.get("wsgi.input_terminated"):  # chunked: left as werkzeug reads it
            self.annex_body = LimitedStream(environ["wsgi.input"],
                                            int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = self.annex_body
        return environ

    def closing_only_when_needed(self: serving.WSGIRequestHandler, keyword: str,
                                 value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close" and \
                not self.close_connection and \
                self.annex_body is not None and self.annex_body.is_exhausted:
            _ANSWER.keeps_connection = True
            return
        send_header(self, keyword, value)

    handler.handle_one_request = one_request  # type: ignore[method-assign]
    handler.make_environ = bounded_environ  # type: ignore[method-assign]
    handler.send_header = closing_only_when_needed  # type: ignore[method-assign]
    serving.selectors = _DiscardOnlyOnClose  # type: ignore[attr-defined]


def main() -> None:
    listed_once()
    if os.environ.get("ANNEX_MOTO_ACCESS_LOG") != "1":
        without_access_log()
    keep_alive()
    from moto import server

    server.main()


if __name__ == "__main__":
    main()
