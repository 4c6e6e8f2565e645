"""`make exps`: experiments of recent commits, changed params first, within the width.

Experiments are stored as DVC stores them (refs/exps/<baseline[:2]>/<baseline[2:]>/<name>);
tests/team/test_experiment_listing.py runs the real `dvc exp run`.
"""

import json

import pytest
import yaml

from stroke_risk.commands.exps import main
from stroke_risk.reports.experiment_table import changed_params, render
from tests.code.fake_experiments import commit_experiment, git_repo

LONG_PATH = "/data/hospital-a/exports/2026-11/stroke-registry-with-a-very-long-name.csv"


def write_outputs(repo, *, target_recall, raw_path="data/raw/brain.csv", recall=0.8):
    params = {
        "data": {"name": "brain", "raw_path": raw_path},
        "model": {"family": "logreg"},
        "threshold": {"policy": "min_recall", "target_recall": target_recall},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "reports").mkdir(exist_ok=True)
    metrics = {
        "cv": {"roc_auc": 0.842482, "roc_auc_std": 0.023658},
        "test": {"roc_auc": 0.846822, "recall": recall, "specificity": 0.731785},
    }
    (repo / "reports" / "metrics.json").write_text(json.dumps(metrics))


def make_repo(repo):
    git = git_repo(repo)
    write_outputs(repo, target_recall=0.8)
    git("add", "-A")
    git("commit", "-qm", "baseline")
    baseline = git("rev-parse", "HEAD")
    for name, target, raw_path, recall in (
        ("r60", 0.6, "data/raw/brain.csv", 0.6),
        ("ext", 0.8, LONG_PATH, 0.82),
    ):
        write_outputs(repo, target_recall=target, raw_path=raw_path, recall=recall)
        commit_experiment(git, baseline, name)
    git("commit", "-q", "--allow-empty", "-m", "later work")
    return repo, baseline


def test_changed_params_lists_only_what_differs():
    assert changed_params({"a": 1, "b": [1]}, {"a": 1, "b": [2], "c": "x"}) == ("b=[2]", "c=x")


@pytest.mark.integration
def test_experiments_of_an_older_commit_are_listed_with_their_changes_within_100_columns(
    tmp_path,
):
    repo, baseline = make_repo(tmp_path / "repo")
    text = render(repo, commits=5, width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, text
    assert any(line.startswith(f"baseline {baseline[:7]} (HEAD~1): baseline") for line in lines)
    r60 = next(line for line in lines if line.startswith("r60 "))
    cells = r60.split()
    assert cells[1] == "threshold.target_recall=0.6"
    assert cells[2:] == ["logreg", "0.8425±0.0237", "0.8468", "0.600/0.732"]
    # A long value wraps onto continuation lines instead of hiding behind "…".
    start = next(i for i, line in enumerate(lines) if line.startswith("ext "))
    wrapped = "".join(
        line.split()[0] if i else line.split()[1] for i, line in enumerate(lines[start : start + 3])
    )
    assert wrapped.startswith(f"data.raw_path={LONG_PATH}")
    assert "…" not in "\n".join(lines[start:])
    # HEAD (no experiments) has its own block; the workspace equals HEAD: no extra row.
    assert "(HEAD):" in text and "workspace" not in text


@pytest.mark.integration
def test_a_bounded_history_leaves_older_experiments_out_and_says_how_to_reach_them(
    tmp_path, capsys
):
    repo, _ = make_repo(tmp_path / "repo")
    assert main(["--repo", str(repo), "--commits", "1"]) == 0
    out = capsys.readouterr().out
    assert "r60" not in out and "dvc exp list -A" in out
    write_outputs(repo, target_recall=0.7, recall=0.7)
    assert main(["--repo", str(repo)]) == 0
    workspace = next(line for line in capsys.readouterr().out.splitlines() if "workspace" in line)
    assert "threshold.target_recall=0.7" in workspace
