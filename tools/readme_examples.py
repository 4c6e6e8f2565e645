"""README examples that are a command's real output, regenerated and checked.

A block in README.md between

    <!-- output of: COMMAND -->
    ```
    ...
    ```
    <!-- end output -->

is the standard output of COMMAND (one of COMMANDS, run from the repository root on the
committed reports). `python -m tools.readme_examples` rewrites every such block;
`--check` lists the stale ones and exits 1 (tests/tools/test_readme_examples.py runs it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = "README.md"
S3_REMOTE_EXAMPLE = (
    "python -m stroke_risk.tracking.object_store dvc-remote "
    "--url s3://my-bucket/stroke-risk --endpoint https://s3.example.org"
)
# What a block may show: the README's name of the command -> the argv that produces it.
COMMANDS: dict[str, list[str]] = {
    "python -m stroke_risk.reports.summary": [sys.executable, "-m", "stroke_risk.reports.summary"],
    S3_REMOTE_EXAMPLE: [sys.executable, "-m", *S3_REMOTE_EXAMPLE.split()[2:]],
}
BLOCK = re.compile(
    r"(?P<head><!-- output of: (?P<command>[^>]+?) -->\n```\n)(?P<body>.*?)(?P<tail>```\n"
    r"<!-- end output -->)",
    re.DOTALL,
)


def command_output(command: str, root: Path) -> str:
    """The standard output of a README command run in root; ValueError if it is unknown."""
    if command not in COMMANDS:
        raise ValueError(f"README shows the output of unknown command {command!r}")
    # This checkout's package, also when root is a copy that holds only the reports.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        COMMANDS[command], cwd=root, capture_output=True, text=True, check=True, env=env
    ).stdout


def regenerated(text: str, root: Path) -> str:
    """The README text with every output block replaced by its command's real output."""
    return BLOCK.sub(lambda m: m["head"] + command_output(m["command"], root) + m["tail"], text)


def stale_blocks(root: Path) -> list[str]:
    """One line per output block of root's README that differs from its command's output."""
    text = (root / README).read_text(encoding="utf-8")
    problems = [
        f"{README}: the output of `{m['command']}` is stale: run python -m tools.readme_examples"
        for m in BLOCK.finditer(text)
        if m["body"] != command_output(m["command"], root)
    ]
    if not BLOCK.search(text):
        problems.append(f"{README}: no generated output block found")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.readme_examples")
    parser.add_argument("--check", action="store_true", help="list stale blocks, exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_blocks(ROOT)
        print("\n".join(problems) or "README examples are current")
        return 1 if problems else 0
    path = ROOT / README
    path.write_text(regenerated(path.read_text(encoding="utf-8"), ROOT), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
