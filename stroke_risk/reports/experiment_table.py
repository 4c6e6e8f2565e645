"""The experiment table: recent commits' experiments, what each changed, headline metrics.

    python -m stroke_risk.commands.exps               # last 5 commits, 100 columns
    python -m stroke_risk.commands.exps --commits 20 --width 160

One block per baseline commit that has experiments (HEAD always): the baseline's row, then
each experiment's, with the params it changed against its baseline first (one per line,
wrapped, never hidden behind `…`), then family, CV ROC-AUC ± sd, test ROC-AUC and
recall / specificity at the decision threshold. The workspace is a row of HEAD's block when
its params or metrics differ from HEAD's. Read from the same git refs and committed files as
`make compare` (refs/exps/<baseline>/<name>), so it lists what `dvc exp show` does not show
after a commit; older experiments: `dvc exp list -A` or a larger --commits.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stroke_risk import paths
from stroke_risk.evaluation.comparison import (
    DEFAULT_COMMITS,
    MISSING,
    recent_baselines,
)
from stroke_risk.run_files import Reader, directory_reader, flatten, git_reader

DEFAULT_WIDTH = 100
GAP = "  "
HEADER = ("run", "changed params (vs baseline)", "family", "CV ROC-AUC", "test AUC", "rec / spec")
MIN_CHANGED_WIDTH = 16


@dataclass(frozen=True)
class Row:
    name: str
    changed: tuple[str, ...]  # "key=value", the params that differ from the baseline
    family: str
    metrics: dict[str, Any]


def read_outputs(read: Reader) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, metrics) of a revision, flattened; empty when a file is missing."""
    params_text, metrics_text = read(paths.PARAMS), read(paths.METRICS)
    params = flatten(yaml.safe_load(params_text) or {}) if params_text else {}
    metrics = flatten(json.loads(metrics_text)) if metrics_text else {}
    return params, metrics


def changed_params(baseline: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[str, ...]:
    """'key=value' for every param that differs from the baseline (removed: 'key=–')."""
    keys = sorted(set(baseline) | set(params))
    return tuple(
        f"{key}={_value(params.get(key))}" for key in keys if baseline.get(key) != params.get(key)
    )


def _value(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _metric(metrics: Mapping[str, Any], key: str, digits: int) -> str:
    value = metrics.get(key)
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else MISSING


def metric_cells(row: Row) -> list[str]:
    m = row.metrics
    cv = _metric(m, "cv.roc_auc", 4)
    if "cv.roc_auc_std" in m and cv != MISSING:
        cv += f"±{_metric(m, 'cv.roc_auc_std', 4)}"
    return [
        row.family,
        cv,
        _metric(m, "test.roc_auc", 4),
        f"{_metric(m, 'test.recall', 3)}/{_metric(m, 'test.specificity', 3)}",
    ]


def render_block(title: str, rows: Sequence[Row], width: int) -> list[str]:
    """A title line and an aligned table no wider than `width`; the changed-params column
    takes what the others leave and wraps (one param per line)."""
    cells = [[row.name, "", *metric_cells(row)] for row in rows]
    widths = [max(len(HEADER[i]), *(len(c[i]) for c in cells)) for i in range(len(HEADER))]
    others = sum(w for i, w in enumerate(widths) if i != 1) + len(GAP) * (len(HEADER) - 1)
    natural = max([len(HEADER[1])] + [len(p) for row in rows for p in row.changed])
    widths[1] = max(MIN_CHANGED_WIDTH, min(natural, width - others))
    lines = [textwrap.shorten(title, width=width, placeholder="…")]
    lines.append(GAP.join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)).rstrip())
    for row, row_cells in zip(rows, cells, strict=True):
        changed = [
            piece
            for param in (row.changed or ("(baseline)",))
            for piece in textwrap.wrap(param, widths[1], break_on_hyphens=False)
        ]
        for index, piece in enumerate(changed):
            first = index == 0
            line = [
                row_cells[0] if first else "",
                piece,
                *(row_cells[2:] if first else [""] * (len(HEADER) - 2)),
            ]
            lines.append(GAP.join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return lines


def experiment_blocks(repo: Path, commits: int) -> list[tuple[str, list[Row]]]:
    """(title, rows) per baseline commit with experiments (HEAD always), newest first."""
    blocks = []
    for index, baseline in enumerate(recent_baselines(repo, commits)):
        params, metrics = read_outputs(git_reader(repo, baseline.commit))
        rows = [Row(baseline.commit[:7], (), str(params.get("model.family", MISSING)), metrics)]
        for name, commit in baseline.experiments.items():
            exp_params, exp_metrics = read_outputs(git_reader(repo, commit))
            rows.append(
                Row(
                    name,
                    changed_params(params, exp_params),
                    str(exp_params.get("model.family", MISSING)),
                    exp_metrics,
                )
            )
        if index == 0:
            work_params, work_metrics = read_outputs(directory_reader(repo))
            if (work_params, work_metrics) != (params, metrics):
                family = str(work_params.get("model.family", MISSING))
                changed = changed_params(params, work_params) or ("(outputs differ)",)
                rows.append(Row("workspace", changed, family, work_metrics))
        title = f"baseline {baseline.name}: {baseline.subject}"
        blocks.append((title, rows))
    return blocks


def render(repo: Path, commits: int = DEFAULT_COMMITS, width: int = DEFAULT_WIDTH) -> str:
    lines = [
        textwrap.shorten(
            f"Experiments of the last {commits} commits; older: dvc exp list -A, "
            "make exps COMMITS=N",
            width=width,
            placeholder="…",
        )
    ]
    for title, rows in experiment_blocks(repo, commits):
        lines += ["", *render_block(title, rows, width)]
    return "\n".join(lines)
