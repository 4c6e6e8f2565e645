"""README blocks generated from the code: commands' real output and the module layout.

A block in README.md between

    <!-- output of: COMMAND -->
    ```
    ...
    ```
    <!-- end output -->

is the standard output of COMMAND (one of COMMANDS, run from the repository root on the
committed reports). The block between `<!-- module layout -->` and `<!-- end module layout -->`
lists every module of LAYOUT_FOLDERS in one line, the first line of its docstring, the package
grouped by room in the order of the import layers (pyproject.toml, ground floor first).
`python -m tools.readme_examples` rewrites every block; `--check` lists the stale ones and
exits 1 (tests/tools/test_readme_examples.py runs it).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = "README.md"
S3_REMOTE_EXAMPLE = (
    "python -m stroke_risk.commands.object_store dvc-remote "
    "--url s3://my-bucket/stroke-risk --endpoint https://s3.example.org"
)
# What a block may show: the README's name of the command -> the argv that produces it.
COMMANDS: dict[str, list[str]] = {
    "python -m stroke_risk.commands.summary": [
        sys.executable,
        "-m",
        "stroke_risk.commands.summary",
    ],
    S3_REMOTE_EXAMPLE: [sys.executable, "-m", *S3_REMOTE_EXAMPLE.split()[2:]],
}
BLOCK = re.compile(
    r"(?P<head><!-- output of: (?P<command>[^>]+?) -->\n```\n)(?P<body>.*?)(?P<tail>```\n"
    r"<!-- end output -->)",
    re.DOTALL,
)

LAYOUT = re.compile(
    r"(?P<head><!-- module layout -->\n)(?P<body>.*?)(?P<tail><!-- end module layout -->)",
    re.DOTALL,
)
# The folders whose modules the layout lists; the package first, by room.
PACKAGE = "stroke_risk"
LAYOUT_FOLDERS = (PACKAGE, "app", "stages", "monitoring", "tools", "benchmarks")


def command_output(command: str, root: Path) -> str:
    """The standard output of a README command run in root; ValueError if it is unknown."""
    if command not in COMMANDS:
        raise ValueError(f"README shows the output of unknown command {command!r}")
    # This checkout's package, also when root is a copy that holds only the reports.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        COMMANDS[command], cwd=root, capture_output=True, text=True, check=True, env=env
    ).stdout


def module_summary(path: Path) -> str:
    """The first line of a module's docstring: what the module holds.

    ValueError names the file when the docstring is missing or its first paragraph runs over
    more than one line (the layout shows one line per module, so that line must say it all).
    """
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not docstring:
        raise ValueError(f"{path}: no module docstring saying what the module holds")
    first_paragraph = docstring.strip().split("\n\n")[0]
    if "\n" in first_paragraph:
        raise ValueError(
            f"{path}: the docstring's first paragraph is several lines; make its first line "
            "a summary of its own, followed by a blank line"
        )
    return first_paragraph


def package_rooms(code_root: Path) -> list[str]:
    """The package's folders (rooms) from the ground floor up, as the import layers of
    pyproject.toml order them; rooms the layers do not name come last, by name."""
    contracts = tomllib.loads((code_root / "pyproject.toml").read_text())["tool"]["importlinter"]
    layered = [
        name.strip().removeprefix(f"{PACKAGE}.")
        for layer in reversed(contracts["contracts"][0]["layers"])
        for name in layer.replace("|", ":").split(":")
        if name.strip().startswith(f"{PACKAGE}.")
    ]
    folders = sorted(
        p.name for p in (code_root / PACKAGE).iterdir() if (p / "__init__.py").is_file()
    )
    return [room for room in layered if room in folders] + [
        room for room in folders if room not in layered
    ]


def folder_lines(code_root: Path, folder: Path, indent: str) -> list[str]:
    """One line per module directly in folder (its __init__ is the folder's own line)."""
    return [
        f"{indent}- `{path.relative_to(code_root).as_posix()}`: {module_summary(path)}"
        for path in sorted(folder.glob("*.py"))
        if path.name != "__init__.py"
    ]


def layout_block(code_root: Path) -> str:
    """Every module of LAYOUT_FOLDERS in one Markdown line, grouped by folder (and room)."""
    lines: list[str] = []
    for name in LAYOUT_FOLDERS:
        folder = code_root / name
        lines.append(f"- `{name}/`: {module_summary(folder / '__init__.py')}")
        if name != PACKAGE:
            lines += folder_lines(code_root, folder, "  ")
            continue
        lines.append("  - ground floor (imported by every room, importing none):")
        lines += folder_lines(code_root, folder, "    ")
        for room in package_rooms(code_root):
            room_folder = folder / room
            lines.append(f"  - `{name}/{room}/`: {module_summary(room_folder / '__init__.py')}")
            lines += folder_lines(code_root, room_folder, "    ")
    return "\n".join(lines) + "\n"


def regenerated(text: str, root: Path) -> str:
    """The README text with every output block replaced by its command's real output and the
    layout block by this checkout's modules."""
    text = BLOCK.sub(lambda m: m["head"] + command_output(m["command"], root) + m["tail"], text)
    return LAYOUT.sub(lambda m: m["head"] + layout_block(ROOT) + m["tail"], text)


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
    layout = LAYOUT.search(text)
    if layout is None:
        problems.append(f"{README}: no module layout block found")
    elif layout["body"] != layout_block(ROOT):
        problems.append(
            f"{README}: the module layout is stale: run python -m tools.readme_examples"
        )
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
