"""The service's latest live figures in a file, shared by every worker and replica.

The collector (app/live_metrics_exporter.py) exports what this file holds; whichever
process finds it stale first recomputes it under the file's lock, so every worker and
every replica sharing the prediction log exports the same numbers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from stroke_risk.monitoring.live import Figure


class SharedFigures:
    """The service's latest figures in a file next to the prediction log, one per version.

    Whoever scrapes finds the file; when it is older than ``max_age`` seconds, the first
    process to take the file's lock (non-blocking flock) recomputes it and replaces it
    atomically, while the others export the previous figures. So every worker and every
    replica sharing the log export the same numbers, computed once per ``max_age``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def read(self) -> dict[str, Any] | None:
        """Return the stored document ({"computed_at", "figures"}), None if absent or torn."""
        try:
            document = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return document if isinstance(document, dict) else None

    def write(self, computed_at: float, figures: Sequence[Figure]) -> None:
        document = {
            "computed_at": computed_at,
            "figures": [[f.name, [list(pair) for pair in f.labels], f.value] for f in figures],
        }
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(document))
        os.replace(temporary, self.path)

    @contextlib.contextmanager
    def lease(self, *, wait: bool) -> Iterator[bool]:
        """Hold the file's lock while inside; yields False when another process holds it
        and not wait. The lock is released if the holder dies, so no lease is ever stuck."""
        with open(self.lock_path, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def stored_figures(document: Mapping[str, Any]) -> list[Figure]:
    return [
        Figure(str(name), float(value), tuple((str(k), str(v)) for k, v in labels))
        for name, labels, value in document.get("figures", [])
    ]


def shared_figures_path(database: Path, model_version: str, kind: str) -> Path:
    """The shared file of one model version's figures, next to the prediction log."""
    return database.with_name(f"{database.name}.{kind}-{model_version}.json")
