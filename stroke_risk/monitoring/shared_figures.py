"""The service's latest whole-service figures, stored where every worker and instance reads them.

Whoever is scraped reads the stored figures; when they are stale, the first process to take
the store's lease (non-blocking) recomputes and replaces them while the others export the
previous ones. So every worker and every instance sharing the prediction log exports the
same numbers, computed once per cache period. Two stores keep that contract:

- ``FileFigures``: a file next to the SQLite log, replaced atomically, leased by flock
  (one host);
- stroke_risk.monitoring.postgres_log.DatabaseFigures: a row of the PostgreSQL log, leased
  by an advisory lock (every host).

A lease is released when its holder dies (flock and advisory locks end with the process or
the connection), so no lease is ever stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from stroke_risk.monitoring.live import Figure


def figures_document(computed_at: float, figures: Sequence[Figure]) -> dict[str, Any]:
    """The stored form: {"computed_at": seconds, "figures": [[name, [[k, v], ...], value]]}."""
    return {
        "computed_at": computed_at,
        "figures": [[f.name, [list(pair) for pair in f.labels], f.value] for f in figures],
    }


def stored_figures(document: Mapping[str, Any]) -> list[Figure]:
    """The figures of a stored document (figures_document's inverse)."""
    return [
        Figure(str(name), float(value), tuple((str(k), str(v)) for k, v in labels))
        for name, labels, value in document.get("figures", [])
    ]


class FigureStore(Protocol):
    """Where one kind of one model version's figures live (see the module docstring)."""

    def read(self) -> dict[str, Any] | None: ...

    def write(self, computed_at: float, figures: Sequence[Figure]) -> None: ...

    def lease(self, *, wait: bool) -> contextlib.AbstractContextManager[bool]: ...


class FileFigures:
    """The figures in a file (replaced atomically), leased by flock on a companion file."""

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
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(figures_document(computed_at, figures)))
        os.replace(temporary, self.path)

    @contextlib.contextmanager
    def lease(self, *, wait: bool) -> Iterator[bool]:
        """Hold the file's lock while inside; yields False when another process holds it
        and not wait."""
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


def shared_figures_path(database: Path, model_version: str, kind: str) -> Path:
    """The file of one model version's figures of one kind, next to the SQLite log."""
    return database.with_name(f"{database.name}.{kind}-{model_version}.json")
