"""Execute a notebook into a separate file, leaving the committed one without outputs.

    python -m tools.run_notebook notebook/demo.ipynb notebook/demo.executed.ipynb

(`make notebook`.) `jupyter execute --output` is not honoured by every nbclient release and
then writes the outputs into the source notebook, which must stay output-free (the
nbstripout check in `make lint`). The executed copy is written atomically, also when a cell
fails, so the failure can be read in it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

DEFAULT_TOTAL_SECONDS = 300


def execute_notebook(
    source: Path, target: Path, total_seconds: float = DEFAULT_TOTAL_SECONDS
) -> None:
    """Run every cell of source (working directory: its folder) and write the result to
    target; source is not modified. The whole run is bounded by total_seconds."""
    from nbclient import NotebookClient

    from stroke_risk.io import write_text

    notebook = nbformat.read(source, as_version=4)
    deadline = time.monotonic() + total_seconds
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        # Every cell gets what is left of the overall budget, so the run is bounded in total.
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        startup_timeout=60,
        resources={"metadata": {"path": str(source.resolve().parent)}},
    )
    try:
        client.execute()
    finally:
        write_text(target, nbformat.writes(notebook))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--total-seconds", type=float, default=DEFAULT_TOTAL_SECONDS)
    args = parser.parse_args(argv)
    try:
        execute_notebook(args.source, args.target, args.total_seconds)
    except Exception as error:  # noqa: BLE001 - a failed cell is reported as one line
        first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        print(f"notebook failed: {first} (outputs so far: {args.target})", file=sys.stderr)
        return 1
    print(f"wrote {args.target} (open it in JupyterLab, VS Code or GitHub)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
