"""The pre-commit hooks work offline and `make lint` runs the same checks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

VENV_PREFIX = ".venv/bin/"
# Flags the hooks need because pre-commit passes file names; `make lint` passes folders.
HOOK_ONLY_FLAGS = {"--force-exclude"}


def hooks() -> list[dict]:
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def lint_recipe() -> list[str]:
    """The command lines of the Makefile's `lint` target."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    match = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert match, "the Makefile has no lint target"
    return [line.strip() for line in match.group(1).splitlines()]


def test_every_hook_is_local_and_runs_a_tool_of_the_venv():
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]  # nothing to download
    for hook in hooks():
        assert hook["language"] == "system", hook["id"]
        executable = shlex.split(hook["entry"])[0]
        assert executable.startswith(VENV_PREFIX), hook["id"]
        assert (REPO_ROOT / executable).exists(), f"{hook['id']}: {executable} is not installed"


def test_make_lint_runs_every_hook():
    recipe = lint_recipe()
    assert hooks(), ".pre-commit-config.yaml has no hooks"
    for hook in hooks():
        words = [w for w in shlex.split(hook["entry"]) if w not in HOOK_ONLY_FLAGS]
        command = " ".join([Path(words[0]).name, *words[1:]])
        assert any(line.startswith(command) for line in recipe), (
            f"hook {hook['id']} runs `{command}`, which `make lint` does not"
        )
