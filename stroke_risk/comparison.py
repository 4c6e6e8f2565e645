"""Tested comparisons between experiments: one table, and paired tests on shared data.

    python -m stroke_risk.comparison                 # workspace + every experiment of HEAD
    python -m stroke_risk.comparison exp-a exp-b     # named experiments, git revs or folders
    python -m stroke_risk.comparison --output reports/comparison.md

Each run is read from the files the pipeline commits with every experiment: params.yaml,
reports/tuning.json (per-fold CV scores), reports/evaluation.json and
reports/test_predictions.csv. Runs on the same data with the same CV settings share their
folds, so they are compared pairwise:

- on the repeated CV folds with the corrected resampled t-test of Nadeau & Bengio (2003):
  the variance of the per-fold differences is inflated by (1/J + n_test/n_train) to account
  for the overlap of training sets between folds (a plain paired t-test is far too liberal);
- on the shared test split with a paired patient bootstrap: both models are scored on the
  same resamples, giving the difference, its percentile CI and a two-sided p-value.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from stroke_risk.evaluation import percentile_interval, resample_weights, weighted_metrics

COMPARED_METRICS = ("roc_auc", "average_precision", "brier")
METRIC_LABELS = {"roc_auc": "ROC AUC", "average_precision": "AP", "brier": "Brier"}
Reader = Callable[[str], str | None]


class ComparisonError(Exception):
    """A run that cannot be read; the message names it and the fix."""


@dataclass
class Run:
    name: str
    family: str
    data: str
    cv_settings: dict[str, Any]
    fold_scores: pd.DataFrame  # one row per fold: fold, roc_auc, average_precision, brier
    evaluation: dict[str, Any]
    test_predictions: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """Runs with the same group share CV folds and test rows."""
        provenance = self.evaluation.get("provenance", {})
        return json.dumps(
            [self.data, self.cv_settings, provenance.get("train_sha256")], sort_keys=True
        )


def directory_reader(root: Path) -> Reader:
    def read(path: str) -> str | None:
        file = root / path
        return file.read_text() if file.is_file() else None

    return read


def git_reader(repo: Path, revision: str) -> Reader:
    def read(path: str) -> str | None:
        result = subprocess.run(
            ["git", "show", f"{revision}:{path}"], cwd=repo, capture_output=True, text=True
        )
        return result.stdout if result.returncode == 0 else None

    return read


def load_run(name: str, read: Reader) -> Run:
    """A run from its params.yaml and report files; missing test predictions are allowed
    (older experiments), missing CV scores are not."""
    texts = {path: read(path) for path in ("params.yaml", "reports/tuning.json")}
    missing = [path for path, text in texts.items() if text is None]
    if missing:
        raise ComparisonError(
            f"{name}: {', '.join(missing)} not found; run the pipeline for it (dvc exp run)"
        )
    params = yaml.safe_load(texts["params.yaml"] or "")
    tuning = json.loads(texts["reports/tuning.json"] or "{}")
    evaluation = json.loads(read("reports/evaluation.json") or "{}")
    predictions_text = read("reports/test_predictions.csv")
    data = params.get("data", {})
    return Run(
        name=name,
        family=str(params.get("model", {}).get("family", tuning.get("family", "?"))),
        data=str(data.get("name") or Path(str(data.get("raw_path", "?"))).stem),
        cv_settings={**params.get("cv", {}), "split": params.get("split", {})},
        fold_scores=pd.DataFrame(tuning.get("fold_scores", [])),
        evaluation=evaluation,
        test_predictions=None
        if predictions_text is None
        else pd.read_csv(io.StringIO(predictions_text)),
        extra={"cv": tuning.get("cv", {})},
    )


def experiment_revisions(repo: Path, baseline: str = "HEAD") -> dict[str, str]:
    """Experiment name -> commit for the DVC experiments whose baseline is `baseline`."""
    head = subprocess.run(
        ["git", "rev-parse", baseline], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    prefix = f"refs/exps/{head[:2]}/{head[2:]}/"
    listing = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname) %(objectname)", prefix],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    revisions = {}
    for line in listing.splitlines():
        ref, commit = line.split()
        revisions[ref.removeprefix(prefix)] = commit
    return dict(sorted(revisions.items()))


def resolve_source(repo: Path, source: str, experiments: dict[str, str]) -> Run:
    """A folder, an experiment name of HEAD, any experiment ref name, or a git revision."""
    if source == "workspace":
        return load_run("workspace", directory_reader(repo))
    if Path(source).is_dir():
        return load_run(Path(source).name, directory_reader(Path(source)))
    if source in experiments:
        return load_run(source, git_reader(repo, experiments[source]))
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout.split()
    for ref in refs:
        if ref.rsplit("/", 1)[-1] == source:
            return load_run(source, git_reader(repo, ref))
    check = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{source}^{{commit}}"],
        cwd=repo,
        capture_output=True,
    )
    if check.returncode == 0:
        return load_run(source, git_reader(repo, source))
    raise ComparisonError(
        f"{source!r} is not a folder, an experiment name or a git revision; list experiments "
        "with `dvc exp show`"
    )


def corrected_resampled_ttest(
    scores_a: Sequence[float], scores_b: Sequence[float], *, test_train_ratio: float
) -> dict[str, float]:
    """Nadeau & Bengio's corrected resampled t-test of mean(a - b) over shared CV folds.

    test_train_ratio is n_held_out / n_fit of one fold (1 / (k - 1) for k-fold CV).
    Returns difference, ci_low, ci_high (95 %), t, df, p (two-sided).
    """
    differences = np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float)
    folds = len(differences)
    if folds < 2:
        raise ValueError("the corrected t-test needs at least two shared folds")
    mean = float(differences.mean())
    variance = float(differences.var(ddof=1))
    standard_error = float(np.sqrt((1 / folds + test_train_ratio) * variance))
    df = folds - 1
    if standard_error == 0:
        t, p = (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
    else:
        t = mean / standard_error
        p = float(2 * stats.t.sf(abs(t), df))
    half_width = float(stats.t.ppf(0.975, df)) * standard_error
    return {
        "difference": mean,
        "ci_low": mean - half_width,
        "ci_high": mean + half_width,
        "t": float(t),
        "df": df,
        "p": p,
    }


def paired_bootstrap(
    y_true: np.ndarray,
    probability_a: np.ndarray,
    probability_b: np.ndarray,
    *,
    n_resamples: int,
    seed: int,
    metrics: Sequence[str] = COMPARED_METRICS,
    chunk: int = 250,
) -> dict[str, dict[str, float | None]]:
    """Metric(a) - metric(b) on the same patient resamples of a shared test split.

    p is two-sided: twice the smaller share of resampled differences on either side of 0.
    """
    weights = resample_weights(len(y_true), n_resamples=n_resamples, seed=seed)
    full = np.ones((1, len(y_true)))
    result: dict[str, dict[str, float | None]] = {}
    point_a = weighted_metrics(y_true, probability_a, 0.5, full)
    point_b = weighted_metrics(y_true, probability_b, 0.5, full)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for start in range(0, n_resamples, chunk):
        block = weights[start : start + chunk]
        values_a = weighted_metrics(y_true, probability_a, 0.5, block)
        values_b = weighted_metrics(y_true, probability_b, 0.5, block)
        for name in metrics:
            samples[name].append(values_a[name] - values_b[name])
    for name in metrics:
        differences = np.concatenate(samples[name])
        differences = differences[~np.isnan(differences)]
        low, high = percentile_interval(differences)
        share_below = float(np.mean(differences <= 0)) if differences.size else 1.0
        share_above = float(np.mean(differences >= 0)) if differences.size else 1.0
        result[name] = {
            "difference": float(point_a[name][0] - point_b[name][0]),
            "ci_low": low,
            "ci_high": high,
            "p": min(1.0, 2 * min(share_below, share_above)),
        }
    return result


def cv_comparison(run: Run, reference: Run) -> dict[str, dict[str, float]]:
    """Corrected t-test per metric on the folds both runs share (same fold index)."""
    merged = run.fold_scores.merge(reference.fold_scores, on="fold", suffixes=("_a", "_b"))
    n_splits = int(run.cv_settings.get("n_splits", 5))
    return {
        name: corrected_resampled_ttest(
            merged[f"{name}_a"], merged[f"{name}_b"], test_train_ratio=1 / (n_splits - 1)
        )
        for name in COMPARED_METRICS
        if f"{name}_a" in merged
    }


def holdout_comparison(
    run: Run, reference: Run, *, n_resamples: int, seed: int
) -> dict[str, dict[str, float | None]] | None:
    """Paired bootstrap on the test split, or None when the predictions are not shared."""
    a, b = run.test_predictions, reference.test_predictions
    if a is None or b is None or len(a) != len(b):
        return None
    if not np.array_equal(a["stroke"].to_numpy(), b["stroke"].to_numpy()):
        return None
    return paired_bootstrap(
        a["stroke"].to_numpy(),
        a["probability"].to_numpy(),
        b["probability"].to_numpy(),
        n_resamples=n_resamples,
        seed=seed,
    )


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _test_entry(run: Run, key: str) -> dict[str, Any]:
    entry = run.evaluation.get("test", {}).get(key)
    return entry if isinstance(entry, dict) else {"value": entry}


def summary_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        cv = run.extra.get("cv", {})
        auc = _test_entry(run, "roc_auc")
        slope = run.evaluation.get("calibration", {}).get("test", {}).get("calibration_slope", {})
        rows.append(
            [
                run.name,
                run.family,
                run.data,
                f"{_num(cv.get('roc_auc'))} ± {_num(cv.get('roc_auc_std'))}",
                f"{_num(cv.get('average_precision'))}",
                f"{_num(cv.get('brier'), 5)}",
                f"{_num(auc.get('value'))} ({_num(auc.get('ci_low'), 3)}-"
                f"{_num(auc.get('ci_high'), 3)})",
                f"{_num(_test_entry(run, 'recall').get('value'), 3)} / "
                f"{_num(_test_entry(run, 'specificity').get('value'), 3)}",
                _num(slope.get("value"), 2),
            ]
        )
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def compare(
    runs: Sequence[Run], *, reference: str | None = None, n_resamples: int = 2000, seed: int = 0
) -> str:
    """The comparison report as Markdown: the summary table, then per group of runs that
    share folds, every run against the group's reference (given, or best CV ROC AUC)."""
    lines = [
        "# Experiment comparison",
        "",
        *markdown_table(
            [
                "run",
                "family",
                "data",
                "CV ROC AUC ± sd",
                "CV AP",
                "CV Brier",
                "test ROC AUC (95% CI)",
                "test recall / specificity",
                "test cal. slope",
            ],
            summary_rows(runs),
        ),
        "",
    ]
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    for members in groups.values():
        if len(members) < 2:
            continue
        chosen = [run for run in members if run.name == reference]
        ref = (
            chosen[0]
            if chosen
            else max(members, key=lambda run: run.extra.get("cv", {}).get("roc_auc", -1))
        )
        lines += [
            f"## Paired tests on `{ref.data}` against `{ref.name}` ({ref.family})",
            "",
            "Difference = run - reference (for Brier, negative is better). CV: corrected "
            f"resampled t-test over {len(ref.fold_scores)} shared folds. Test: paired patient "
            f"bootstrap ({n_resamples} resamples) on the shared test split.",
            "",
        ]
        rows = []
        for run in members:
            if run is ref:
                continue
            cv = cv_comparison(run, ref)
            test = holdout_comparison(run, ref, n_resamples=n_resamples, seed=seed)
            for name in COMPARED_METRICS:
                c = cv.get(name)
                t = (test or {}).get(name)
                rows.append(
                    [
                        f"{run.name} ({run.family})",
                        METRIC_LABELS[name],
                        "n/a"
                        if c is None
                        else f"{_signed(c['difference'])} ({_signed(c['ci_low'])} to "
                        f"{_signed(c['ci_high'])})",
                        "n/a" if c is None else _p(c["p"]),
                        "n/a"
                        if t is None
                        else f"{_signed(t['difference'])} ({_signed(t['ci_low'])} to "
                        f"{_signed(t['ci_high'])})",
                        "n/a" if t is None else _p(t["p"]),
                    ]
                )
        lines += markdown_table(
            [
                "run",
                "metric",
                "CV difference (95% CI)",
                "CV p",
                "test difference (95% CI)",
                "test p",
            ],
            rows,
        )
        lines.append("")
    unpaired = [members[0].name for members in groups.values() if len(members) == 1]
    if unpaired:
        lines += [
            "Not tested (no other run on the same data and folds): "
            + ", ".join(f"`{name}`" for name in unpaired)
            + ".",
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stroke_risk.comparison", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "sources",
        nargs="*",
        help="experiment names, git revisions or folders holding params.yaml and reports/; "
        "'workspace' for the working tree (default: workspace + every experiment of HEAD)",
    )
    parser.add_argument("--reference", help="run to compare the others with (default: best CV AUC)")
    parser.add_argument("--repo", default=".", type=Path)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    try:
        experiments = experiment_revisions(args.repo)
        sources = args.sources or ["workspace", *experiments]
        runs = [resolve_source(args.repo, source, experiments) for source in sources]
    except (ComparisonError, subprocess.CalledProcessError) as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    report = compare(runs, reference=args.reference, n_resamples=args.resamples, seed=args.seed)
    print(report)
    if args.output:
        from stroke_risk.io import write_text

        write_text(args.output, report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
