"""A function run in an OS thread, also in a worker that gevent has monkey-patched."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any


class BackgroundJob:
    """target(*args) in an OS thread, started at once; also under gevent's monkey-patching,
    where threading.Thread is a greenlet (a second of CPU-bound fitting would then stall
    the worker's event loop) and gevent's own thread pool is the safe way out."""

    def __init__(self, target: Callable[..., None], *args: Any, name: str) -> None:
        self._thread: threading.Thread | None = None
        self._pooled: Any = None
        # Only a process that gevent has already patched uses it (nothing is imported).
        monkey: Any = sys.modules.get("gevent.monkey")
        if monkey is not None and monkey.is_module_patched("threading"):
            self._pooled = sys.modules["gevent"].get_hub().threadpool.spawn(target, *args)
            return
        self._thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._thread.start()

    def running(self) -> bool:
        if self._pooled is not None:
            return not self._pooled.ready()
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        """Block until the job ends or timeout seconds pass (tests)."""
        if self._pooled is not None:
            self._pooled.wait(timeout)
        elif self._thread is not None:
            self._thread.join(timeout)
