"""A deadline on reading a request body, so a client that stalls its body frees its slot.

gunicorn times out neither a body that stops arriving nor one that trickles in; under the
gevent worker every such connection holds one of ``worker_connections`` slots for ever,
so enough of them starve the worker (``/health`` included). BodyDeadline wraps the WSGI
input: the whole body must arrive within ``seconds`` of the app being called, otherwise
the read raises werkzeug's RequestTimeout (a JSON 408 from the app's error handler) and
the socket's read side is shut, so gunicorn cannot wait on the rest of the body either.

Under gevent (the default worker) the deadline is a gevent.Timeout around each read: it
bounds the whole read. Under sync and gthread workers it is the socket's timeout, set to
the time left before each read: it bounds each wait for bytes, not a body trickled
byte by byte (those workers are for trusted networks; the README says so).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import RequestTimeout

if TYPE_CHECKING:  # the standard WSGI type (typeshed), as Flask.wsgi_app declares it
    from _typeshed.wsgi import WSGIEnvironment


class BodyTimeout(RequestTimeout):
    description = "the request body did not arrive in time"


def _gevent_patched() -> bool:
    monkey: Any = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


class DeadlineInput:
    """A WSGI input stream whose reads fail with BodyTimeout after the deadline."""

    def __init__(self, stream: Any, deadline: float, sock: socket.socket | None) -> None:
        self._stream = stream
        self._deadline = deadline
        self._socket = sock
        self._gevent = _gevent_patched()

    @contextmanager
    def _bounded(self) -> Iterator[None]:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._expire()
        if self._gevent:
            import gevent

            timeout = gevent.Timeout(remaining, BodyTimeout)
            timeout.start()
            try:
                yield
            except BodyTimeout:
                self._expire()
            finally:
                timeout.close()
            return
        previous = self._socket.gettimeout() if self._socket is not None else None
        if self._socket is not None:
            self._socket.settimeout(remaining)
        try:
            yield
        except TimeoutError:
            self._expire()
        finally:
            if self._socket is not None:
                with suppress(OSError):
                    self._socket.settimeout(previous)

    def _expire(self) -> None:
        # Nothing more will be read from this connection: gunicorn then closes it after
        # the 408 instead of draining a body that may never come.
        if self._socket is not None:
            with suppress(OSError):
                self._socket.shutdown(socket.SHUT_RD)
        raise BodyTimeout()

    def read(self, size: int | None = -1) -> bytes:
        with self._bounded():
            return self._stream.read(size) if size is not None else self._stream.read()
        raise AssertionError("unreachable")  # pragma: no cover (for type checkers)

    def readline(self, size: int | None = -1) -> bytes:
        with self._bounded():
            return self._stream.readline(size)
        raise AssertionError("unreachable")  # pragma: no cover

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def bound_body_reads(environ: WSGIEnvironment, seconds: float) -> None:
    """Make the request's body reads (if it has a body) fail after seconds from now."""
    if environ.get("CONTENT_LENGTH", "0") not in ("", "0") or environ.get("HTTP_TRANSFER_ENCODING"):
        environ["wsgi.input"] = DeadlineInput(
            environ["wsgi.input"],
            time.monotonic() + seconds,
            environ.get("gunicorn.socket"),
        )
