"""Tested comparisons between experiments: one table, and paired tests on shared data.

    python -m stroke_risk.commands.compare                 # experiments of the last 5 commits
    python -m stroke_risk.commands.compare exp-a exp-b  # experiments, revs or folders
    python -m stroke_risk.commands.compare --commits 20 --output reports/comparison.md

Each run is read from the files the pipeline commits with every experiment: params.yaml,
reports/tuning.json (per-fold CV scores), reports/evaluation.json,
reports/test_predictions.csv and reports/metrics.json. An experiment is compared with its
baseline commit (the commit it was run on, named in its git ref refs/exps/<commit>/<name>),
which is also a row of the table. Runs on the same data with the same CV settings share
their folds, so they are compared pairwise:

- on the repeated CV folds with the corrected resampled t-test of Nadeau & Bengio (2003):
  the variance of the per-fold differences is inflated by (1/J + n_test/n_train) to account
  for the overlap of training sets between folds (a plain paired t-test is far too liberal);
- on the shared test split with a paired patient bootstrap: both models are scored on the
  same resamples, giving the difference, its percentile CI and a two-sided p-value. Recall,
  specificity and precision are scored at each run's own decision threshold, so a
  threshold change is tested too.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from stroke_risk import paths
from stroke_risk.evaluation.metrics import percentile_interval, resample_weights, weighted_metrics
from stroke_risk.run_files import Reader, directory_reader, flatten, git_reader

COMPARED_METRICS = ("roc_auc", "average_precision", "brier")
THRESHOLD_METRICS = ("recall", "specificity", "precision")
LOWER_IS_BETTER = frozenset({"brier", "log_loss", "ece"})
METRIC_LABELS = {
    "roc_auc": "ROC AUC",
    "average_precision": "AP",
    "brier": "Brier",
    "recall": "recall",
    "specificity": "specificity",
    "precision": "precision",
}
SIGNIFICANCE_LEVEL = 0.05
CV_METHOD = "corrected resampled t-test (Nadeau-Bengio) on the shared CV folds"
TEST_METHOD = "paired patient bootstrap on the shared test split"
# The optimism-corrected (nested-CV) estimate, when the pipeline writes it (issue 17).
NESTED_KEY, NESTED_STD_KEY = "cv.roc_auc_nested", "cv.roc_auc_nested_std"
DEFAULT_COMMITS = 5
MISSING = "–"


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
    metrics: dict[str, Any] = field(default_factory=dict)  # reports/metrics.json, flattened
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, flattened
    baseline: str | None = None  # commit an experiment was run on
    fingerprint: str = ""  # hash of its reports: equal runs are the same run
    is_baseline: bool = False  # a commit listed as experiments' baseline (a reference only)

    @property
    def group(self) -> str:
        """Runs with the same group share CV folds and test rows."""
        provenance = self.evaluation.get("provenance", {})
        return json.dumps(
            [self.data, self.cv_settings, provenance.get("train_sha256")], sort_keys=True
        )

    @property
    def threshold(self) -> float | None:
        """The decision threshold evaluate used, or None for runs that do not record it."""
        value = self.evaluation.get("threshold", {}).get("value")
        return None if value is None else float(value)


def load_run(name: str, read: Reader, *, baseline: str | None = None) -> Run:
    """A run from its params.yaml and report files; missing test predictions are allowed
    (older experiments), missing CV scores are not."""
    texts = {path: read(path) for path in (paths.PARAMS, paths.TUNING_REPORT)}
    missing = [path for path, text in texts.items() if text is None]
    if missing:
        raise ComparisonError(
            f"{name}: {', '.join(missing)} not found; run the pipeline for it (dvc exp run)"
        )
    params = yaml.safe_load(texts[paths.PARAMS] or "")
    tuning = json.loads(texts[paths.TUNING_REPORT] or "{}")
    evaluation_text = read(paths.EVALUATION) or "{}"
    evaluation = json.loads(evaluation_text)
    predictions_text = read(paths.TEST_PREDICTIONS)
    metrics = flatten(json.loads(read(paths.METRICS) or "{}"))
    data = params.get("data", {})
    fingerprint = hashlib.sha256(
        "\0".join([texts[paths.TUNING_REPORT] or "", evaluation_text]).encode()
    ).hexdigest()
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
        extra={"cv": tuning.get("cv", {}), "best_params": tuning.get("best_params", {})},
        metrics=metrics,
        params=flatten(params),
        baseline=baseline,
        fingerprint=fingerprint,
    )


# --- experiments and their baselines ---------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


@dataclass(frozen=True)
class Baseline:
    """A commit and the DVC experiments run on it (name -> experiment commit)."""

    commit: str
    position: str  # "HEAD", "HEAD~1", ...
    subject: str
    experiments: dict[str, str]

    @property
    def name(self) -> str:
        """The baseline's run name in tables: short commit and where it is."""
        return f"{self.commit[:7]} ({self.position})"


def experiment_revisions(repo: Path, baseline: str = "HEAD") -> dict[str, str]:
    """Experiment name -> commit for the DVC experiments whose baseline is `baseline`.

    DVC keeps each experiment as the git ref refs/exps/<baseline[:2]>/<baseline[2:]>/<name>.
    """
    head = _git(repo, "rev-parse", baseline).strip()
    prefix = f"refs/exps/{head[:2]}/{head[2:]}/"
    listing = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    revisions = {}
    for line in listing.splitlines():
        ref, commit = line.split()
        revisions[ref.removeprefix(prefix)] = commit
    return dict(sorted(revisions.items()))


def recent_baselines(repo: Path, commits: int = DEFAULT_COMMITS) -> list[Baseline]:
    """HEAD and each of the `commits` most recent commits of its history that has
    experiments, newest first. Older experiments: `dvc exp list -A`, or a larger `commits`."""
    history = _git(
        repo, "log", "--first-parent", f"-n{max(commits, 1)}", "--format=%H %s", "HEAD"
    ).splitlines()
    baselines = []
    for index, line in enumerate(history):
        commit, _, subject = line.partition(" ")
        experiments = experiment_revisions(repo, commit)
        if experiments or index == 0:
            position = "HEAD" if index == 0 else f"HEAD~{index}"
            baselines.append(Baseline(commit, position, subject, experiments))
    return baselines


def default_runs(repo: Path, commits: int = DEFAULT_COMMITS) -> tuple[list[Run], list[str]]:
    """The baselines of recent commits with their experiments, and the workspace when it
    holds something else; plus notes on what was left out and why."""
    runs: list[Run] = []
    notes: list[str] = []
    loaded: set[str] = set()
    baselines = recent_baselines(repo, commits)
    for baseline in baselines:
        try:
            runs.append(load_run(baseline.name, git_reader(repo, baseline.commit)))
            runs[-1].is_baseline = True
            loaded.add(baseline.name)
        except ComparisonError:
            notes.append(
                f"Baseline `{baseline.name}` has no committed reports (tuning.json): its "
                "experiments are not tested against it."
            )
        for name, commit in baseline.experiments.items():
            runs.append(load_run(name, git_reader(repo, commit), baseline=baseline.name))
    head = baselines[0].name if baselines and baselines[0].name in loaded else None
    try:
        workspace = load_run("workspace", directory_reader(repo), baseline=head)
    except ComparisonError:
        return runs, notes
    same = [run.name for run in runs if run.fingerprint == workspace.fingerprint]
    if same:
        notes.append(f"The workspace holds the same outputs as `{same[0]}`.")
    else:
        runs.append(workspace)
    return runs, notes


def _baseline_of_ref(ref: str) -> str | None:
    parts = ref.split("/")
    # refs/exps/ab/cdef.../name
    if len(parts) == 5 and parts[:2] == ["refs", "exps"] and len(parts[2] + parts[3]) == 40:
        return parts[2] + parts[3]
    return None


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
            baseline = _baseline_of_ref(ref)
            run = load_run(source, git_reader(repo, ref))
            run.baseline = baseline
            return run
    check = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{source}^{{commit}}"],
        cwd=repo,
        capture_output=True,
    )
    if check.returncode == 0:
        return load_run(source, git_reader(repo, source))
    raise ComparisonError(
        f"{source!r} is not a folder, an experiment name or a git revision; list experiments "
        "with `make exps` (older ones: `dvc exp list -A`)"
    )


def named_runs(repo: Path, sources: Sequence[str]) -> list[Run]:
    """The named runs, each experiment preceded by its baseline commit (once)."""
    experiments = experiment_revisions(repo)
    runs: list[Run] = []
    by_commit: dict[str, str] = {}
    for source in sources:
        run = resolve_source(repo, source, experiments)
        if run.baseline is None and source in experiments:
            run.baseline = _git(repo, "rev-parse", "HEAD").strip()
        if run.baseline is not None and run.baseline not in by_commit:
            name = f"{run.baseline[:7]} (baseline)"
            try:
                runs.append(load_run(name, git_reader(repo, run.baseline)))
                runs[-1].is_baseline = True
                by_commit[run.baseline] = name
            except ComparisonError:
                by_commit[run.baseline] = ""
        if run.baseline is not None:
            run.baseline = by_commit[run.baseline] or None
        runs.append(run)
    return runs


# --- paired tests ----------------------------------------------------------------------------


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
    threshold_a: float = 0.5,
    threshold_b: float = 0.5,
    chunk: int = 250,
) -> dict[str, dict[str, float | None]]:
    """Metric(a) - metric(b) on the same patient resamples of a shared test split.

    Threshold metrics (recall, specificity, precision) are taken at each run's own
    threshold. p is two-sided: twice the smaller share of resampled differences on either
    side of 0 (1.0 when the two runs agree on every resample).
    """
    weights = resample_weights(len(y_true), n_resamples=n_resamples, seed=seed)
    full = np.ones((1, len(y_true)))
    result: dict[str, dict[str, float | None]] = {}
    point_a = weighted_metrics(y_true, probability_a, threshold_a, full)
    point_b = weighted_metrics(y_true, probability_b, threshold_b, full)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for start in range(0, n_resamples, chunk):
        block = weights[start : start + chunk]
        values_a = weighted_metrics(y_true, probability_a, threshold_a, block)
        values_b = weighted_metrics(y_true, probability_b, threshold_b, block)
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
            "value_a": float(point_a[name][0]),
            "value_b": float(point_b[name][0]),
        }
    return result


def cv_comparison(run: Run, reference: Run) -> dict[str, dict[str, float]]:
    """Corrected t-test per metric on the folds both runs share (same fold index)."""
    if run.fold_scores.empty or reference.fold_scores.empty:
        return {}
    merged = run.fold_scores.merge(reference.fold_scores, on="fold", suffixes=("_a", "_b"))
    if len(merged) < 2:
        return {}
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
    """Paired bootstrap on the test split, or None when the predictions are not shared.

    The threshold metrics are included when both runs record their decision threshold.
    """
    a, b = run.test_predictions, reference.test_predictions
    if a is None or b is None or len(a) != len(b):
        return None
    if not np.array_equal(a["stroke"].to_numpy(), b["stroke"].to_numpy()):
        return None
    thresholds = (run.threshold, reference.threshold)
    with_thresholds = thresholds[0] is not None and thresholds[1] is not None
    return paired_bootstrap(
        a["stroke"].to_numpy(),
        a["probability"].to_numpy(),
        b["probability"].to_numpy(),
        n_resamples=n_resamples,
        seed=seed,
        metrics=COMPARED_METRICS + (THRESHOLD_METRICS if with_thresholds else ()),
        threshold_a=thresholds[0] if thresholds[0] is not None else 0.5,
        threshold_b=thresholds[1] if thresholds[1] is not None else 0.5,
    )


def direction(metric: str, difference: float, p: float | None) -> str:
    """'better', 'worse' (run vs reference, lower is better for Brier/log-loss) or
    'no significant change' (p >= 0.05 or no test)."""
    if p is None or p >= SIGNIFICANCE_LEVEL or difference == 0:
        return "no significant change"
    improved = difference < 0 if metric in LOWER_IS_BETTER else difference > 0
    return "better" if improved else "worse"


@dataclass(frozen=True)
class PairedTest:
    """One metric of a run against its reference: difference = run - reference."""

    key: str  # metrics.json key, e.g. "cv.roc_auc", "test.recall"
    metric: str  # "roc_auc"
    split: str  # "CV" or "test"
    difference: float
    ci_low: float | None
    ci_high: float | None
    p: float
    method: str

    @property
    def label(self) -> str:
        return f"{self.split} {METRIC_LABELS.get(self.metric, self.metric)}"

    @property
    def verdict(self) -> str:
        return direction(self.metric, self.difference, self.p)


def paired_tests(run: Run, reference: Run, *, n_resamples: int, seed: int) -> list[PairedTest]:
    """Every headline metric of run against reference: CV (corrected t-test) first, then
    the test split (paired bootstrap, threshold metrics at each run's threshold)."""
    tests = [
        PairedTest(
            f"cv.{name}", name, "CV", r["difference"], r["ci_low"], r["ci_high"], r["p"], CV_METHOD
        )
        for name, r in cv_comparison(run, reference).items()
    ]
    holdout = holdout_comparison(run, reference, n_resamples=n_resamples, seed=seed) or {}
    for name, h in holdout.items():
        tests.append(
            PairedTest(
                f"test.{name}",
                name,
                "test",
                float(h["difference"] or 0.0),
                h["ci_low"],
                h["ci_high"],
                float(h["p"] if h["p"] is not None else 1.0),
                TEST_METHOD,
            )
        )
    return tests


# --- formatting ------------------------------------------------------------------------------


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def format_p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


_p = format_p


def format_difference(test: PairedTest) -> str:
    """'+0.0103 (+0.0040 to +0.0170)'."""
    return f"{_signed(test.difference)} ({_signed(test.ci_low)} to {_signed(test.ci_high)})"


def nested_estimate(metrics: Mapping[str, Any]) -> str:
    """`cv.roc_auc_nested ± sd` when the run has it, else '–'."""
    value = metrics.get(NESTED_KEY)
    if not isinstance(value, (int, float)):
        return MISSING
    spread = metrics.get(NESTED_STD_KEY)
    return f"{value:.4f} ± {spread:.4f}" if isinstance(spread, (int, float)) else f"{value:.4f}"


def _test_entry(run: Run, key: str) -> dict[str, Any]:
    entry = run.evaluation.get("test", {}).get(key)
    return entry if isinstance(entry, dict) else {"value": entry}


SUMMARY_HEADER = (
    "run",
    "baseline",
    "family",
    "data",
    "CV ROC AUC ± sd",
    "nested CV ROC AUC ± sd",
    "CV AP",
    "CV Brier",
    "test ROC AUC (95% CI)",
    "threshold",
    "test recall / specificity",
    "test cal. slope",
)


def summary_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        cv = run.extra.get("cv", {})
        auc = _test_entry(run, "roc_auc")
        slope = run.evaluation.get("calibration", {}).get("test", {}).get("calibration_slope", {})
        rows.append(
            [
                run.name,
                f"`{run.baseline}`" if run.baseline else MISSING,
                run.family,
                run.data,
                f"{_num(cv.get('roc_auc'))} ± {_num(cv.get('roc_auc_std'))}",
                nested_estimate(run.metrics),
                f"{_num(cv.get('average_precision'))}",
                f"{_num(cv.get('brier'), 5)}",
                f"{_num(auc.get('value'))} ({_num(auc.get('ci_low'), 3)}-"
                f"{_num(auc.get('ci_high'), 3)})",
                _num(run.threshold, 4),
                f"{_num(_test_entry(run, 'recall').get('value'), 3)} / "
                f"{_num(_test_entry(run, 'specificity').get('value'), 3)}",
                _num(slope.get("value"), 2),
            ]
        )
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def choose_references(
    runs: Sequence[Run], reference: str | None = None
) -> tuple[dict[str, Run], list[str]]:
    """Run name -> the run it is tested against, and the runs that cannot be paired.

    The reference is `reference` when given; else an experiment's baseline commit; else
    (no baseline, or one on other data or folds, e.g. `-S data=healthcare`) the best CV
    ROC AUC among such runs of its data and folds. A run is tested only against a
    reference on the same data and folds.
    """
    by_name = {run.name: run for run in runs}
    chosen: dict[str, Run] = {}
    if reference:
        ref = by_name.get(reference)
        if ref is None:
            raise ComparisonError(f"--reference {reference!r} is not one of the compared runs")
        chosen = {run.name: ref for run in runs if run is not ref and run.group == ref.group}
    else:
        orphans: dict[str, list[Run]] = {}
        for run in runs:
            baseline = by_name.get(run.baseline or "")
            if baseline is not None and baseline.group == run.group:
                chosen[run.name] = baseline
            elif not run.is_baseline:
                orphans.setdefault(run.group, []).append(run)
        for members in orphans.values():
            best = max(members, key=lambda m: m.extra.get("cv", {}).get("roc_auc", -1))
            chosen.update({m.name: best for m in members if m is not best})
    references = {ref.name for ref in chosen.values()}
    unpaired = [
        run.name
        for run in runs
        if run.name not in chosen and run.name not in references and not run.is_baseline
    ]
    return chosen, unpaired


def compare(
    runs: Sequence[Run],
    *,
    reference: str | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    notes: Sequence[str] = (),
) -> str:
    """The comparison report as Markdown: the summary table, then every run against its
    reference (given, else its baseline commit, else the best CV ROC AUC on its data).
    An unknown reference raises ComparisonError."""
    lines = ["# Experiment comparison", "", *markdown_table(SUMMARY_HEADER, summary_rows(runs)), ""]
    chosen, unpaired = choose_references(runs, reference)
    by_reference: dict[str, list[Run]] = {}
    for run in runs:
        if run.name in chosen:
            by_reference.setdefault(chosen[run.name].name, []).append(run)
    by_name = {run.name: run for run in runs}
    for ref_name, members in by_reference.items():
        ref = by_name[ref_name]
        how = (
            "given reference"
            if reference
            else "baseline commit"
            if all(m.baseline == ref.name for m in members)
            else "best CV ROC AUC on this data"
        )
        lines += [
            f"## Paired tests against `{ref.name}` ({ref.family}, {how})",
            "",
            "Difference = run - reference; verdict at p < 0.05 (for Brier, lower is better). "
            f"CV: {CV_METHOD} ({len(ref.fold_scores)} folds). Test: {TEST_METHOD} "
            f"({n_resamples} resamples; recall, specificity and precision at each run's own "
            "threshold).",
            "",
        ]
        rows = []
        for run in members:
            for test in paired_tests(run, ref, n_resamples=n_resamples, seed=seed):
                rows.append(
                    [
                        f"{run.name} ({run.family})",
                        test.label,
                        format_difference(test),
                        format_p(test.p),
                        test.verdict,
                    ]
                )
        lines += markdown_table(["run", "metric", "difference (95% CI)", "p", "verdict"], rows)
        lines.append("")
    if unpaired:
        lines += [
            "Not tested (no reference on the same data and folds): "
            + ", ".join(f"`{name}`" for name in unpaired)
            + ".",
            "",
        ]
    lines += [note for note in notes] + ([""] if notes else [])
    return "\n".join(lines)
