"""Bounded traffic generator for the stroke-risk service, optionally with drift.

    python -m monitoring.simulate --url http://127.0.0.1:8000 --requests 200 \\
        --drift age+25 --feedback-rate 0.5 --seed 0

Samples records from data/raw/brain.csv (or generates plausible ones from the schema with
``--synthetic``), applies drift specifications, posts them to ``/predict`` (single records
and batches), optionally posts ``/feedback`` with a label (the sampled row's true label,
or drawn from the returned probability) and prints a summary. The summary ends with what
the service itself reports on its ``/metrics`` afterwards: the features that drifted most
(PSI), the multivariate drift classifier's AUC, and the label-based performance next to
the label-free estimates.

It sends only to the URL given, and refuses a non-loopback host unless ``--allow-remote``
is passed, so a stray command cannot load-test someone else's server. It authenticates
with the token in STROKE_API_TOKEN (scopes predict, feedback and metrics; see
``python -m app.credentials``), sent as ``Authorization: Bearer``.

Drift specifications (repeat ``--drift`` or separate with commas; ``@P`` applies the
change to a random share P of records):

- ``age+25``, ``age-10``, ``avg_glucose_level*1.5``: numeric shift/scale, clipped to the
  schema's range so the records stay valid;
- ``smoking_status=smokes``, ``hypertension=1``, ``bmi=30``: set a value;
- ``bmi=null@0.3``: make 30 % of bmi values missing.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests

from stroke_risk.data.schema import (
    FEATURE_NAMES,
    FEATURES_BY_NAME,
    TARGET,
    BinaryField,
    CategoricalField,
    NumericField,
)
from stroke_risk.monitoring.drift import PSI_SIGNIFICANT, psi_band

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "raw" / "brain.csv"
DRIFT_PATTERN = re.compile(
    r"^(?P<field>[A-Za-z_]+)(?P<op>[+\-*=])(?P<value>[^@]+?)(?:@(?P<share>[0-9.]+))?$"
)
# Stop early when the service is unreachable instead of timing out N times.
MAX_CONSECUTIVE_FAILURES = 5
TOP_DRIFTED = 3
# The service recomputes its figures at most every STROKE_MONITOR_CACHE_SECONDS (2 s).
DEFAULT_REPORT_DELAY_SECONDS = 2.5


# --- drift specifications ------------------------------------------------------------


@dataclass(frozen=True)
class DriftSpec:
    """One change applied to sampled records: ``field op value`` on a share of records."""

    field: str
    op: str
    value: Any
    share: float = 1.0


def parse_drift(text: str) -> DriftSpec:
    """Parse 'age+25', 'avg_glucose_level*1.5', 'smoking_status=smokes', 'bmi=null@0.3'.

    Raises ValueError with the reason (unknown field, non-numeric shift, value outside
    the schema's domain, share outside [0, 1]).
    """
    match = DRIFT_PATTERN.match(text.strip())
    if not match:
        raise ValueError(
            f"cannot parse drift {text!r}; expected e.g. age+25 or smoking_status=smokes"
        )
    name, op, raw = match["field"], match["op"], match["value"].strip()
    share = float(match["share"]) if match["share"] else 1.0
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"drift {text!r}: share must be between 0 and 1")
    spec = FEATURES_BY_NAME.get(name)
    if spec is None:
        raise ValueError(
            f"drift {text!r}: unknown field; expected one of {', '.join(FEATURE_NAMES)}"
        )
    if op != "=":
        if not isinstance(spec, NumericField):
            raise ValueError(f"drift {text!r}: {op} applies to numeric fields only")
        return DriftSpec(name, op, float(raw), share)
    if raw.lower() in ("null", "none", "missing"):
        if not (isinstance(spec, NumericField) and spec.nullable):
            raise ValueError(f"drift {text!r}: {name} may not be missing")
        return DriftSpec(name, op, None, share)
    if isinstance(spec, CategoricalField):
        if raw not in spec.categories:
            raise ValueError(f"drift {text!r}: expected one of {', '.join(spec.categories)}")
        return DriftSpec(name, op, raw, share)
    if isinstance(spec, BinaryField):
        if raw not in ("0", "1"):
            raise ValueError(f"drift {text!r}: expected 0 or 1")
        return DriftSpec(name, op, int(raw), share)
    value = float(raw)
    if not spec.minimum <= value <= spec.maximum:
        raise ValueError(f"drift {text!r}: outside {spec.minimum:g}-{spec.maximum:g}")
    return DriftSpec(name, op, value, share)


def apply_drift(
    record: dict[str, Any], specs: Sequence[DriftSpec], rng: np.random.Generator
) -> dict[str, Any]:
    """A copy of record with each spec applied (to a random share of records)."""
    out = dict(record)
    for spec in specs:
        if spec.share < 1.0 and rng.random() >= spec.share:
            continue
        current = out.get(spec.field)
        if spec.op == "=":
            out[spec.field] = spec.value
            continue
        if current is None:
            continue
        shifted = {"+": current + spec.value, "-": current - spec.value, "*": current * spec.value}[
            spec.op
        ]
        field_spec = FEATURES_BY_NAME[spec.field]
        assert isinstance(field_spec, NumericField)
        out[spec.field] = round(min(max(shifted, field_spec.minimum), field_spec.maximum), 2)
    return out


# --- record sources ------------------------------------------------------------------


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of the raw CSV (ten fields + stroke) as JSON-ready dicts (NaN bmi -> None)."""
    from stroke_risk.data.load import load_dataset  # pandas/sklearn only when reading a file

    frame = load_dataset(path)
    rows: list[dict[str, Any]] = []
    for raw in frame.to_dict("records"):
        row: dict[str, Any] = {}
        for name in (*FEATURE_NAMES, TARGET):
            value = raw[name]
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and np.isnan(value):
                value = None
            row[name] = value
        rows.append(row)
    return rows


def synthetic_row(rng: np.random.Generator) -> dict[str, Any]:
    """One plausible record from the schema's domains (no true label: stroke is None).

    Distributions roughly follow the public data set (adults mostly, glucose right-skewed)
    so the model sees ordinary inputs.
    """
    age = float(np.clip(rng.normal(43, 22), 0.08, 82))
    row: dict[str, Any] = {
        "gender": str(rng.choice(["Female", "Male"], p=[0.58, 0.42])),
        "age": round(age, 2),
        "hypertension": int(rng.random() < (0.2 if age > 50 else 0.03)),
        "heart_disease": int(rng.random() < (0.1 if age > 60 else 0.02)),
        "ever_married": "Yes" if age > 25 and rng.random() < 0.8 else "No",
        "work_type": "children"
        if age < 16
        else str(rng.choice(["Private", "Self-employed", "Govt_job"], p=[0.67, 0.18, 0.15])),
        "Residence_type": str(rng.choice(["Rural", "Urban"])),
        "avg_glucose_level": round(float(np.clip(rng.lognormal(4.6, 0.35), 55, 272)), 2),
        "bmi": round(float(np.clip(rng.normal(28.5, 6.5), 12, 60)), 1),
        "smoking_status": str(
            rng.choice(
                ["never smoked", "Unknown", "formerly smoked", "smokes"], p=[0.37, 0.3, 0.17, 0.16]
            )
        ),
        TARGET: None,
    }
    return row


# --- talking to the service ----------------------------------------------------------


def is_loopback_url(url: str) -> bool:
    """True if the URL's host is localhost or a loopback IP literal (no DNS lookup)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def predict_payload(records: Sequence[Mapping[str, Any]]) -> Any:
    """Body of POST /predict: the record itself for one, {"instances": [...]} for a batch."""
    return dict(records[0]) if len(records) == 1 else {"instances": [dict(r) for r in records]}


@dataclass(frozen=True)
class ScoredRecord:
    prediction_id: str | None
    probability: float | None
    decision: bool | None


def parse_predictions(body: Any) -> list[ScoredRecord]:
    """Scored records of a /predict answer: a list under 'predictions' (batch) or one object.

    Keys as the app answers: prediction_id, stroke_probability, stroke_prediction.
    """
    items = body.get("predictions", [body]) if isinstance(body, dict) else body
    scored = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        probability = item.get("stroke_probability")
        decision = item.get("stroke_prediction")
        scored.append(
            ScoredRecord(
                prediction_id=item.get("prediction_id"),
                probability=float(probability) if isinstance(probability, (int, float)) else None,
                decision=bool(decision) if isinstance(decision, (bool, int)) else None,
            )
        )
    return scored


@dataclass
class SimulationSummary:
    """What was sent and how the service answered."""

    predict_requests: int = 0
    records_sent: int = 0
    records_scored: int = 0
    predict_status: Counter[str] = field(default_factory=Counter)
    positive_decisions: int = 0
    probability_sum: float = 0.0
    feedback_sent: int = 0
    feedback_status: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    aborted: str | None = None

    def as_dict(self) -> dict[str, Any]:
        latencies = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "predict_requests": self.predict_requests,
            "records_sent": self.records_sent,
            "records_scored": self.records_scored,
            "predict_status": dict(self.predict_status),
            "positive_rate": self.positive_decisions / self.records_scored
            if self.records_scored
            else None,
            "mean_probability": self.probability_sum / self.records_scored
            if self.records_scored
            else None,
            "feedback_sent": self.feedback_sent,
            "feedback_status": dict(self.feedback_status),
            "latency_ms": {
                q: round(float(np.percentile(latencies, p)), 2)
                for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
            },
            "elapsed_seconds": round(self.elapsed_seconds, 2),
            "aborted": self.aborted,
        }


@dataclass(frozen=True)
class SimulationConfig:
    url: str
    requests: int
    drift: tuple[DriftSpec, ...] = ()
    feedback_rate: float = 0.0
    label_source: str = "truth"  # or "probability"
    batch_fraction: float = 0.2
    max_batch_size: int = 8
    seed: int = 0
    timeout_seconds: float = 5.0
    rate_per_second: float | None = None


def choose_label(
    row: Mapping[str, Any], scored: ScoredRecord, source: str, rng: np.random.Generator
) -> int | None:
    """The label to feed back: the row's true label, or a draw from the probability."""
    if source == "truth" and row.get(TARGET) is not None:
        return int(row[TARGET])
    if scored.probability is None:
        return None
    return int(rng.random() < scored.probability)


def run_simulation(
    config: SimulationConfig, rows: Sequence[Mapping[str, Any]] | None, session: requests.Session
) -> SimulationSummary:
    """Send config.requests /predict requests (and feedback); rows=None means synthetic."""
    rng = np.random.default_rng(config.seed)
    base = config.url.rstrip("/")
    summary = SimulationSummary()
    failures_in_a_row = 0
    started = time.perf_counter()
    for index in range(config.requests):
        if config.rate_per_second:
            # Pace against the schedule, not the previous request, so slow answers do not drift it.
            delay = started + index / config.rate_per_second - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        size = 1
        if config.max_batch_size > 1 and rng.random() < config.batch_fraction:
            size = int(rng.integers(2, config.max_batch_size + 1))
        sampled: list[Mapping[str, Any]]
        if rows is None:
            sampled = [synthetic_row(rng) for _ in range(size)]
        else:
            sampled = [rows[int(i)] for i in rng.integers(0, len(rows), size)]
        records = [
            apply_drift({k: r[k] for k in FEATURE_NAMES}, config.drift, rng) for r in sampled
        ]
        summary.predict_requests += 1
        summary.records_sent += size
        request_started = time.perf_counter()
        try:
            response = session.post(
                f"{base}/predict", json=predict_payload(records), timeout=config.timeout_seconds
            )
        except requests.RequestException as error:
            summary.predict_status[type(error).__name__] += 1
            failures_in_a_row += 1
            if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                summary.aborted = f"{failures_in_a_row} consecutive connection failures"
                break
            continue
        failures_in_a_row = 0
        summary.latencies_ms.append((time.perf_counter() - request_started) * 1000)
        summary.predict_status[str(response.status_code)] += 1
        if response.status_code != 200:
            continue
        try:
            scored = parse_predictions(response.json())
        except ValueError:
            continue
        for row, result in zip(sampled, scored, strict=False):  # a short answer scores fewer
            summary.records_scored += 1
            summary.probability_sum += result.probability or 0.0
            summary.positive_decisions += int(bool(result.decision))
            if config.feedback_rate <= 0 or rng.random() >= config.feedback_rate:
                continue
            label = choose_label(row, result, config.label_source, rng)
            if label is None or result.prediction_id is None:
                continue
            summary.feedback_sent += 1
            try:
                answer = session.post(
                    f"{base}/feedback",
                    json={"prediction_id": result.prediction_id, "stroke": label},
                    timeout=config.timeout_seconds,
                )
                summary.feedback_status[str(answer.status_code)] += 1
            except requests.RequestException as error:
                summary.feedback_status[type(error).__name__] += 1
    summary.elapsed_seconds = time.perf_counter() - started
    return summary


# --- what the service reports afterwards -----------------------------------------------

PERFORMANCE_FIGURES = ("roc_auc", "recall", "precision")


def service_figures(metrics_text: str) -> dict[str, Any]:
    """Drift and performance figures from the text of the service's /metrics.

    Returns {"drift": {window_records, top_psi [[feature, psi], ...] largest first,
    significant [features with PSI > 0.2], multivariate_drift_auc}, "performance":
    {labels, strokes, non_strokes, label_based {roc_auc, recall, precision},
    estimated {...}}}; a figure the service does not export (yet) is None.
    """
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    psi: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "stroke_feature_psi":
                psi[sample.labels["feature"]] = float(sample.value)
            elif not sample.labels:
                values[sample.name] = float(sample.value)

    def count(name: str) -> int | None:
        return int(values[name]) if name in values else None

    ranked = sorted(psi.items(), key=lambda item: (-item[1], item[0]))
    return {
        "drift": {
            "window_records": count("stroke_drift_window_records"),
            "top_psi": [[name, round(value, 4)] for name, value in ranked[:TOP_DRIFTED]],
            "significant": [name for name, value in ranked if value > PSI_SIGNIFICANT],
            "multivariate_drift_auc": values.get("stroke_multivariate_drift_auc"),
        },
        "performance": {
            "labels": count("stroke_live_labels"),
            "strokes": count("stroke_live_positive_labels"),
            "non_strokes": count("stroke_live_negative_labels"),
            "label_based": {f: values.get(f"stroke_live_{f}") for f in PERFORMANCE_FIGURES},
            "estimated": {f: values.get(f"stroke_estimated_{f}") for f in PERFORMANCE_FIGURES},
        },
    }


def fetch_service_figures(
    session: requests.Session, url: str, timeout_seconds: float
) -> dict[str, Any] | None:
    """service_figures of GET {url}/metrics, or None when it cannot be read."""
    try:
        response = session.get(f"{url.rstrip('/')}/metrics", timeout=timeout_seconds)
        response.raise_for_status()
        return service_figures(response.text)
    except (requests.RequestException, ValueError):
        return None


def format_figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_service_figures(figures: Mapping[str, Any]) -> str:
    """What drifted and how the model performs, as the service reports it."""
    drift, performance = figures["drift"], figures["performance"]
    lines = [
        f"what drifted (the service's drift window of {drift['window_records']} records;"
        " PSI > 0.2 significant, 0.1-0.2 moderate):"
    ]
    if not drift["top_psi"]:
        lines.append("  no drift figures yet (the window is below the minimum)")
    for name, value in drift["top_psi"]:
        lines.append(f"  {name:<20} PSI {value:7.3f}  {psi_band(value)}")
    auc = drift["multivariate_drift_auc"]
    lines.append(
        f"  multivariate drift classifier AUC {format_figure(auc)}"
        " (0.5: like training; > 0.7 alerts)"
    )
    lines.append(f"performance ({performance['labels']} labels, {performance['strokes']} strokes):")
    lines.append(f"  {'':<10}{'label-based':>13}{'estimated without labels':>27}")
    for figure in PERFORMANCE_FIGURES:
        based = format_figure(performance["label_based"][figure])
        estimated = format_figure(performance["estimated"][figure])
        lines.append(f"  {figure:<10}{based:>13}{estimated:>27}")
    if performance["label_based"]["roc_auc"] is None:
        lines.append(
            "  (label-based figures appear once enough strokes and non-strokes are labelled)"
        )
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url", required=True, help="base URL of the service, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument(
        "--requests", type=int, default=100, help="number of /predict requests (bound)"
    )
    parser.add_argument(
        "--drift", action="append", default=[], help="drift spec(s), repeatable or comma-separated"
    )
    parser.add_argument(
        "--feedback-rate", type=float, default=0.0, help="share of scored records given feedback"
    )
    parser.add_argument(
        "--label-source",
        choices=("truth", "probability"),
        default="truth",
        help="feedback label: the sampled row's true label, or a draw from the probability",
    )
    parser.add_argument(
        "--batch-fraction", type=float, default=0.2, help="share of requests sent as batches"
    )
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="max requests per second (default: as fast as possible)",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="raw CSV to sample from")
    parser.add_argument(
        "--synthetic", action="store_true", help="generate records instead of sampling the CSV"
    )
    parser.add_argument("--allow-remote", action="store_true", help="permit a non-loopback URL")
    parser.add_argument(
        "--report-delay",
        type=float,
        default=DEFAULT_REPORT_DELAY_SECONDS,
        help="seconds to wait before reading the service's drift and performance figures",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="do not read the service's /metrics afterwards"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """Validated SimulationConfig from parsed arguments; ValueError names the bad option."""
    if not 0 < args.requests <= 1_000_000:
        raise ValueError("--requests must be between 1 and 1000000")
    if not 0.0 <= args.feedback_rate <= 1.0:
        raise ValueError("--feedback-rate must be between 0 and 1")
    if not 0.0 <= args.batch_fraction <= 1.0:
        raise ValueError("--batch-fraction must be between 0 and 1")
    if args.max_batch_size < 1:
        raise ValueError("--max-batch-size must be at least 1")
    if not 0.0 <= args.report_delay <= 60.0:
        raise ValueError("--report-delay must be between 0 and 60 seconds")
    scheme = urlsplit(args.url).scheme
    if scheme not in ("http", "https"):
        raise ValueError("--url must be an http(s) URL")
    if not args.allow_remote and not is_loopback_url(args.url):
        raise ValueError(
            "--url is not a loopback address; pass --allow-remote to send traffic there"
        )
    specs = tuple(
        parse_drift(part) for item in args.drift for part in item.split(",") if part.strip()
    )
    return SimulationConfig(
        url=args.url,
        requests=args.requests,
        drift=specs,
        feedback_rate=args.feedback_rate,
        label_source=args.label_source,
        batch_fraction=args.batch_fraction,
        max_batch_size=args.max_batch_size,
        seed=args.seed,
        timeout_seconds=args.timeout,
        rate_per_second=args.rate,
    )


def format_summary(summary: Mapping[str, Any]) -> str:
    """Human-readable multi-line summary."""
    lines = [f"{key}: {json.dumps(value)}" for key, value in summary.items()]
    return "\n".join(lines)


TOKEN_VARIABLE = "STROKE_API_TOKEN"


def auth_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Authorization header for the token in STROKE_API_TOKEN (none when unset)."""
    token = (os.environ if environ is None else environ).get(TOKEN_VARIABLE, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    rows = None
    if not args.synthetic:
        if not args.data.is_file():
            parser.error(f"--data {args.data} not found; pass --synthetic to generate records")
        rows = load_rows(args.data)
    with requests.Session() as session:
        session.headers.update(auth_headers())
        summary = run_simulation(config, rows, session).as_dict()
        figures = None
        if not args.no_report and not summary["aborted"]:
            time.sleep(args.report_delay)
            figures = fetch_service_figures(session, config.url, config.timeout_seconds)
    summary["service"] = figures
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary({k: v for k, v in summary.items() if k != "service"}))
        if figures is not None:
            print(format_service_figures(figures))
        elif not args.no_report:
            print("service figures: /metrics could not be read")
    return 1 if summary["aborted"] else 0


if __name__ == "__main__":
    sys.exit(main())
