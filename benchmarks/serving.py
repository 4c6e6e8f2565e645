"""Benchmark the prediction service on this machine and print the figures.

    python -m benchmarks.serving [--duration 10] [--cli-rows 1000000] [--skip-mlflow]
    python -m benchmarks.serving --floor-only [--rounds 3] [--families xgboost,ebm,hgb_monotonic]
    python -m benchmarks.serving --request-path [--rounds 3] [--profile]
    python -m benchmarks.serving --floor-only --families '' --write-readme

Serves the working tree's model (models/ from `make run`) with the real command
(gunicorn, app/gunicorn_conf.py, 2 workers) on a free loopback port and measures:

- the headline, against the floor: a bare Flask app (floor_app: parse the JSON body,
  return a constant JSON) under the same gunicorn settings, started in the same run.
  wrk (2 threads, 8 connections, the single-record body) gives req/s, a sequential
  keep-alive client gives p50; the floor and the service are loaded in turns (rounds),
  so the machine's noise hits both, and the ratio of each round is reported (median).
  The floor under 2 sync workers (the issue's reference) is measured in the same turns.
  With --families (default: random_forest, xgboost, ebm, hgb_monotonic), the largest
  models their search spaces allow are trained into a temporary project and served the
  same way next to a fresh floor (p50 with risk factors), with their in-process cost of
  one record (score, score + risk factors);

- the durability of the prediction log: the service against the same service with
  STROKE_MONITOR_JOURNAL=false, in the same turns (req/s ratio);
- the request path in process (``--request-path`` runs just this, no server, no wrk):
  the CPU time of one POST /predict through the app's WSGI callable, layer by layer
  (floor, the API alone, + bearer check, + page, + prediction log, + journal = the
  service), in turns, so what each part costs is a difference of the same run;
  ``--profile`` adds cProfile's top functions of the service's request;
- authentication: the service with credentials (every request sends its bearer token,
  as every benchmark request does) against the same service with STROKE_AUTH=open, in
  the same turns (``--auth-only`` runs just this pair): req/s ratio, target >= 0.9x;
- startup: launch to the first 200 from /ready (median of 3 starts);
- single-row POST /predict with wrk at 1, 2 (one per worker: the headline p50 and
  req/s) and 8 connections;
- the same server with the compiled path off (STROKE_COMPILED_PATH=0, the naive
  one-row-DataFrame -> sklearn Pipeline handler) for reference;
- `mlflow models serve --env-manager local` (2 workers) on the same model, logged to a
  temporary MLflow store with pyfunc_predict_fn="predict_proba", loaded by the same wrk run;
- a 10,000-record batch request (round trip, median of 20), with and without
  explanations (?explain=false);
- `python -m app.batch` on a generated CSV (default 1,000,000 rows), rows per minute;
- RSS and PSS of the gunicorn master and each worker.

Everything runs on loopback; temporary files go to a temporary directory that is removed.
Load comes from wrk (Debian package `wrk`), which shares the 2 cores with the server.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from stroke_risk.data.schema import EXAMPLE_RECORD
from stroke_risk.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
HEALTHCARE_CSV = REPO_ROOT / "data" / "raw" / "healthcare-dataset-stroke-data.csv"
RECORD = dict(EXAMPLE_RECORD)
TARGETS = {
    "floor_ratio": 0.6,
    "auth_ratio": 0.9,
    "floor_p50_ms": 0.8,
    "tree_p50_ms": 2.0,
    "p50_ms": 2.0,
    "requests_per_second": 500.0,
    "mlflow_speedup": 5.0,
    "batch_10k_ms": 100.0,
    "cli_rows_per_minute": 1_000_000.0,
    "startup_seconds": 2.0,
}


def wait_for(url: str, process: subprocess.Popen, timeout: float) -> float:
    """Return seconds until url answers 200; raise if the process dies or time runs out."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} not ready after {timeout} s")


@dataclass
class Running:
    """A server process started by the benchmark."""

    url: str
    process: subprocess.Popen
    startup_seconds: float
    # What every request to it sends: the bearer token of the benchmark's credential.
    headers: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop the whole process group (gunicorn/uvicorn workers included)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(
    command: list[str],
    env: dict[str, str],
    ready_path: str,
    port: int,
    log: Path,
    timeout: float = 120.0,
) -> Running:
    """Start a server in its own process group and wait for ready_path."""
    started = time.perf_counter()
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + ready_path, process, timeout)
    except RuntimeError:
        Running(url, process, 0.0).stop()
        raise RuntimeError(f"{command[2] if len(command) > 2 else command}: see {log}") from None
    return Running(url, process, time.perf_counter() - started)


BENCHMARK_CREDENTIAL = "benchmark"


def benchmark_token(workdir: Path) -> tuple[Path, str]:
    """The credentials file of this run (created once) and its token (all scopes)."""
    from app.credentials import SCOPES, add_credential, read_credentials

    path, token_file = workdir / "credentials", workdir / "benchmark-token"
    if not path.exists():
        token = add_credential(path, BENCHMARK_CREDENTIAL, frozenset(SCOPES))
        token_file.write_text(token)
        read_credentials(path)  # the file the service will read is valid
    return path, token_file.read_text()


def start_service(workdir: Path, app: str = "app:create_app()", **extra_env: str) -> Running:
    """Start the prediction service exactly as `make serve` does, on a free port.

    app: the WSGI factory gunicorn loads (the floor: "benchmarks.serving:floor_app()").
    The service requires the run's credential (sent by every request of the benchmark)
    unless extra_env sets STROKE_AUTH=open.
    """
    credentials, token = benchmark_token(workdir)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STROKE_", "PROMETHEUS_"))},
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "TMPDIR": str(workdir),
        "STROKE_MAX_BATCH_SIZE": "10000",
        "STROKE_MAX_BODY_BYTES": str(16 << 20),
        # Live monitoring's prediction log: in the temporary directory, not var/.
        "STROKE_MONITOR_DB": str(workdir / "predictions.sqlite"),
        "STROKE_CREDENTIALS_FILE": str(credentials),
        **extra_env,
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "app/gunicorn_conf.py", app]
    server = start(command, env, "/ready", port, workdir / "service.log")
    server.headers = {"Authorization": f"Bearer {token}"}
    return server


# --- the floor: bare Flask under the same gunicorn settings ------------------------------


def floor_app() -> Any:
    """Return the floor: a bare Flask app whose POST /predict parses the JSON body and
    returns a constant JSON answer (``gunicorn ... 'benchmarks.serving:floor_app()'``).

    No validation, model, logging or metrics: the fastest any endpoint here can be under
    the same WSGI server, worker class and client, which is what the service is held to.
    """
    import orjson
    from flask import Flask, Response, request

    app = Flask("floor")
    answer = orjson.dumps({"stroke_probability": 0.5, "stroke_prediction": True})

    @app.post("/predict")
    def predict() -> Response:
        orjson.loads(request.get_data())
        return Response(answer, mimetype="application/json")

    @app.get("/ready")
    def ready() -> Response:
        return Response(b'{"status":"ready"}', mimetype="application/json")

    return app


# --- the request path in process: where one /predict's time goes -----------------------

# Each layer adds one part to the one before; the last is the service as `make serve` runs
# it. (name, label, what it adds)
REQUEST_PATH_LAYERS = (
    ("floor", "floor (bare Flask: parse the body, constant answer)"),
    ("api", "the API alone (validation, scoring, risk factors, ids, metrics)"),
    ("auth", "+ the bearer check"),
    ("page", "+ the clinician page (its hooks)"),
    ("log", "+ the prediction log (buffered, STROKE_MONITOR_JOURNAL=false)"),
    ("service", "+ the journal write: make serve"),
)


def request_path_apps(workdir: Path) -> dict[str, tuple[Any, Any]]:
    """The layers' WSGI apps, built in this process from the working tree's model, each
    with the prediction-log writer to flush (None without live monitoring)."""
    from app.factory import create_app
    from app.model import load_model
    from app.monitoring import MONITOR_KEY
    from app.page import init_page
    from app.settings import Settings

    credentials, _ = benchmark_token(workdir)
    base = Settings.from_env({}).replace(credentials_file=credentials)
    model = load_model(base)
    variants = {
        "api": (base.replace(auth="open"), ()),
        "auth": (base, ()),
        "page": (base, (init_page,)),
        "log": (base.replace(monitor_journal=False), None),
        "service": (base, None),
    }
    apps: dict[str, tuple[Any, Any]] = {"floor": (floor_app(), None)}
    for name, (settings, extensions) in variants.items():
        settings = settings.replace(monitor_db_path=workdir / f"{name}.sqlite")
        app = create_app(settings, model=model, extensions=extensions)
        monitoring = app.extensions.get(MONITOR_KEY)
        apps[name] = (app, monitoring.writer if monitoring is not None else None)
    # As app/gunicorn_conf.py does before forking: the loaded model's objects leave the
    # garbage collector's generations, so collections cost what they cost in a worker.
    gc.collect()
    gc.freeze()
    return apps


def post_once(app: Any, body: bytes, token: str) -> None:
    """POST body to app's /predict as gunicorn would hand it over (WSGI); raise unless 200."""
    import io

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:5000",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []
    answer = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(answer)
    getattr(answer, "close", lambda: None)()
    if not statuses[0].startswith("200"):
        raise RuntimeError(f"in-process POST /predict answered {statuses[0]}")


def request_path_costs(workdir: Path, rounds: int, requests: int) -> dict[str, list[float]]:
    """CPU microseconds per POST /predict of each layer (REQUEST_PATH_LAYERS), one figure
    per round; the layers take turns within each round, so the machine's noise hits all.

    CPU time of the whole process (process_time): the prediction log's flusher thread is
    charged too, and each round ends by flushing the layer's buffer, so no layer pays
    for another's records.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory")
    # As under gunicorn (app/gunicorn_conf.py): metric values in shared files.
    (workdir / "prometheus").mkdir(exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prometheus")
    _, token = benchmark_token(workdir)
    body = json.dumps(RECORD).encode()
    apps = request_path_apps(workdir)
    for app, _ in apps.values():
        for _ in range(200):  # warm-up
            post_once(app, body, token)
    costs: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, (app, writer) in apps.items():
            started = time.process_time()
            for _ in range(requests):
                post_once(app, body, token)
            if writer is not None:
                writer.flush()
            costs[name].append((time.process_time() - started) / requests * 1e6)
    return costs


def request_path_lines(costs: dict[str, list[float]]) -> list[str]:
    """Each layer's CPU per request, what it adds, and its ratio to the service."""
    medians = {name: statistics.median(values) for name, values in costs.items()}
    service = medians["service"]
    lines = [
        "request path in process (CPU µs per POST /predict, median of "
        f"{len(costs['service'])} rounds, layers in turns):"
    ]
    previous = None
    for name, label in REQUEST_PATH_LAYERS:
        added = "" if previous is None else f", adds {medians[name] - medians[previous]:+.0f} µs"
        lines.append(
            f"  {label}: {medians[name]:.0f} µs ({medians[name] / service:.2f}x the service{added})"
        )
        previous = name
    rounds = [f / s for f, s in zip(costs["floor"], costs["service"], strict=True)]
    lines.append(
        f"floor / service CPU per request: {medians['floor'] / service:.2f}x "
        f"(rounds: {', '.join(f'{r:.2f}' for r in rounds)})"
    )
    return lines


def print_request_path(costs: dict[str, list[float]]) -> None:
    print("\n".join(request_path_lines(costs)), flush=True)


def profile_service_request(workdir: Path, requests: int, top: int = 25) -> None:
    """Print cProfile's top functions (own time) of requests POSTs to the service layer."""
    import cProfile
    import pstats

    app, writer = request_path_apps(workdir)["service"]
    _, token = benchmark_token(workdir)
    body = json.dumps(RECORD).encode()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(requests):
        post_once(app, body, token)
    writer.flush()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)


# --- README ----------------------------------------------------------------------------

README = REPO_ROOT / "README.md"
README_START = "<!-- serving-benchmark:start -->"
README_END = "<!-- serving-benchmark:end -->"


def write_readme(figures: dict[str, Any], load_average: float) -> None:
    """Put this run's floor, journal, auth and request-path figures into README.md
    between its markers (README "Serving performance")."""
    lines = [
        *floor_report_lines(figures["floor"]),
        *auth_report_lines(figures["auth"]),
        *request_path_lines(figures["request_path_us"]),
    ]
    rounds = len(figures["floor"]["turns"]["service"]["requests_per_second"])
    block = (
        "`python -m benchmarks.serving --floor-only --families '' --write-readme` "
        f"({rounds} rounds, "
        f"load average {load_average:.1f} on {os.cpu_count()} cores when it started):\n\n"
        "```text\n" + "\n".join(lines) + "\n```"
    )
    text = README.read_text()
    if README_START not in text or README_END not in text:
        sys.exit(f"{README} lacks the {README_START} / {README_END} markers")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    README.write_text(f"{head}{README_START}\n{block}\n{README_END}{tail}")
    print(f"wrote the figures into {README}")


# --- wrk -------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int


def to_ms(text: str) -> float:
    """Return a wrk duration ('812.00us', '1.23ms', '2.00s') in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    number, unit = match.groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(
    url: str,
    body: dict[str, Any],
    connections: int,
    duration: int,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """Load url with POST body (and headers) for duration seconds; return throughput and
    latency."""
    script = workdir / "post.lua"
    extra = "".join(
        f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n"
        for name, value in (headers or {}).items()
    )
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        + extra
        + f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s"]
    output = subprocess.run(
        [*command, "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> WrkResult:
    """Return the figures of wrk's --latency report; errors = socket errors + non-2xx."""

    def number(pattern: str) -> str:
        found = re.search(pattern, output)
        if found is None:
            raise RuntimeError(f"unexpected wrk output:\n{output}")
        return found.group(1)

    percentiles = dict(re.findall(r"^\s*(50|90|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if not {"50", "90", "99"} <= percentiles.keys():
        raise RuntimeError(f"no latency distribution in wrk's output:\n{output}")
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = sum(map(int, socket_errors.groups())) if socket_errors else 0
    return WrkResult(
        requests_per_second=float(number(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=to_ms(percentiles["50"]),
        p90_ms=to_ms(percentiles["90"]),
        p99_ms=to_ms(percentiles["99"]),
        requests=int(number(r"(\d+) requests in")),
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
    )


def sequential_latency_ms(
    url: str,
    body: dict[str, Any],
    requests_count: int,
    extra_headers: dict[str, str] | None = None,
) -> list[float]:
    """Return the round-trip times of requests_count POSTs sent one after another on one
    keep-alive connection (http.client: little client overhead), sorted."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"{url!r} names no host")
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    headers.update(extra_headers or {})
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    times = []
    try:
        for index in range(requests_count + 50):
            started = time.perf_counter()
            connection.request("POST", parts.path, payload, headers)
            response = connection.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"{url}: status {response.status}")
            if index >= 50:  # the first 50 warm up
                times.append(elapsed)
    finally:
        connection.close()
    return sorted(times)


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def load_in_turns(
    servers: dict[str, Running],
    rounds: int,
    duration: int,
    workdir: Path,
    sequential: int,
) -> dict[str, dict[str, list[float]]]:
    """Measure every server once per round, in turns: wrk req/s and sequential p50/p99."""
    figures: dict[str, dict[str, list[float]]] = {
        name: {"requests_per_second": [], "p50_ms": [], "p99_ms": [], "errors": []}
        for name in servers
    }
    for server in servers.values():
        run_wrk(server.url + "/predict", RECORD, 8, 2, workdir, server.headers)  # warm-up
    for _ in range(rounds):
        for name, server in servers.items():
            url = server.url + "/predict"
            result = run_wrk(url, RECORD, 8, duration, workdir, server.headers)
            latencies = sequential_latency_ms(url, RECORD, sequential, server.headers)
            figures[name]["requests_per_second"].append(result.requests_per_second)
            figures[name]["errors"].append(float(result.errors))
            figures[name]["p50_ms"].append(percentile(latencies, 0.5))
            figures[name]["p99_ms"].append(percentile(latencies, 0.99))
    return figures


# The largest models the search spaces allow (conf/search_space/*.yaml): the slowest to
# explain. Each entry: (feature set, model parameters).
LARGEST_TREE_PARAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "random_forest": (
        "full",
        {"n_estimators": 300, "max_depth": 12, "min_samples_leaf": 5, "n_jobs": 1},
    ),
    "xgboost": (
        "full",
        {
            "n_estimators": 400,
            "max_depth": 4,
            "learning_rate": 0.05,
            "n_jobs": 1,
            "tree_method": "hist",
        },
    ),
    # Most bins, smallest leaves, every column; outer_bags and max_rounds are fixed there.
    "ebm": (
        "full",
        {
            "n_jobs": 1,
            "outer_bags": 4,
            "max_rounds": 2000,
            "max_bins": 256,
            "min_samples_leaf": 2,
            "learning_rate": 0.1,
            "smoothing_rounds": 0,
        },
    ),
    # Most rounds and leaves, smallest leaves, the wider of its two feature sets.
    "hgb_monotonic": (
        "monotone",
        {
            "early_stopping": False,
            "max_iter": 400,
            "max_leaf_nodes": 16,
            "min_samples_leaf": 10,
            "learning_rate": 0.3,
            "l2_regularization": 0.001,
        },
    ),
}


def largest_pipeline(family: str) -> Any:
    """Return the largest serving pipeline of a tree family, fitted on brain.csv."""
    from stroke_risk.data.load import load_dataset
    from tests.app.conftest import fit_serving_pipeline_with

    frame = load_dataset(REPO_ROOT / "data" / "raw" / "brain.csv")
    feature_set, params = LARGEST_TREE_PARAMS[family]
    return fit_serving_pipeline_with(family, params, frame, feature_set=feature_set)


def tree_project(family: str, pipeline: Any, workdir: Path) -> Path:
    """Write a fitted pipeline into a temporary project (models/, reports/metrics.json,
    dvc.lock with their md5s); return its directory."""
    from stroke_risk.data.load import load_dataset
    from tests.app.conftest import training_profile, write_artifacts

    frame = load_dataset(REPO_ROOT / "data" / "raw" / "brain.csv")
    root = workdir / f"project-{family}"
    write_artifacts(root, pipeline, reference_profile=training_profile(frame), family=family)
    return root


def in_process_ms(pipeline: Any, repeats: int = 2000) -> dict[str, float]:
    """Median in-process cost of one validated record: score alone, score + risk factors
    (the service's compiled path and explainer, without HTTP, validation or logging)."""
    from app.compiled import artifact_of_pipeline
    from app.explanations import build_explainer, explain_columns
    from app.model import build_scorer
    from app.validation import validate_records

    model = artifact_of_pipeline(pipeline)
    scorer = build_scorer(model)
    explainer = build_explainer(model, scorer)
    if explainer is None:
        raise RuntimeError("the model has no risk factors: see the warning above")
    columns = validate_records([dict(RECORD)]).columns

    def median_ms(call: Any) -> float:
        for _ in range(100):
            call()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    return {
        "score_ms": median_ms(lambda: scorer.predict_proba(columns)),
        "explain_ms": median_ms(lambda: explain_columns(explainer, scorer, columns)),
    }


def compare_auth(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The service with credentials against the same service run open, in turns."""
    servers = {
        "auth": start_service(workdir),
        "open": start_service(workdir, STROKE_AUTH="open"),
    }
    try:
        for name, server in servers.items():
            mode = requests.get(server.url + "/version", headers=server.headers, timeout=5)
            if mode.json()["auth"]["mode"] != ("tokens" if name == "auth" else "open"):
                raise RuntimeError(f"{name}: unexpected auth mode {mode.text[:200]}")
        refused = requests.post(servers["auth"].url + "/predict", json=RECORD, timeout=5)
        if refused.status_code != 401:
            raise RuntimeError(f"the service with credentials answered {refused.status_code}")
        turns = load_in_turns(servers, args.rounds, args.duration, workdir, args.sequential)
    finally:
        for server in servers.values():
            server.stop()
    ratios = [
        ours / bare
        for ours, bare in zip(
            turns["auth"]["requests_per_second"],
            turns["open"]["requests_per_second"],
            strict=True,
        )
    ]
    figures = {
        "turns": turns,
        "auth_ratio": statistics.median(ratios),
        "auth_ratio_rounds": ratios,
    }
    print_auth_report(figures)
    return figures


def auth_report_lines(figures: dict[str, Any]) -> list[str]:
    """The auth-on / auth-off comparison next to its target."""
    lines = ["authentication (in turns, median of rounds; each round: wrk, then p50):"]
    for name, label in (("auth", "bearer token checked"), ("open", "STROKE_AUTH=open")):
        run = figures["turns"][name]
        lines.append(
            f"  {label}: {statistics.median(run['requests_per_second']):.0f} req/s "
            f"(rounds: {', '.join(f'{v:.0f}' for v in run['requests_per_second'])}), "
            f"p50 {statistics.median(run['p50_ms']):.2f} ms, "
            f"{sum(run['errors']):.0f} errors"
        )
    ok = figures["auth_ratio"] >= TARGETS["auth_ratio"]
    lines.append(
        f"auth on / auth off req/s: {figures['auth_ratio']:.2f}x "
        f"[{'ok' if ok else 'MISS'} >= {TARGETS['auth_ratio']}x] "
        f"(rounds: {', '.join(f'{r:.2f}' for r in figures['auth_ratio_rounds'])})"
    )
    return lines


def print_auth_report(figures: dict[str, Any]) -> None:
    print("\n".join(auth_report_lines(figures)), flush=True)


def compare_with_floor(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The headline: the service against the floor (same gunicorn settings), in turns."""
    servers = {
        "floor": start_service(workdir, "benchmarks.serving:floor_app()"),
        "service": start_service(workdir),
        "floor_sync": start_service(
            workdir, "benchmarks.serving:floor_app()", WEB_WORKER_CLASS="sync"
        ),
        # What durability costs: the same service without the per-request journal write.
        "service_no_journal": start_service(workdir, STROKE_MONITOR_JOURNAL="false"),
    }
    try:
        service = servers["service"]
        version = requests.get(service.url + "/version", headers=service.headers, timeout=5)
        version = version.json()
        if not version["explanations"]:
            raise RuntimeError("the service answers without risk factors: see its log")
        turns = load_in_turns(servers, args.rounds, args.duration, workdir, args.sequential)
    finally:
        for server in servers.values():
            server.stop()
    ratios = [
        ours / floor
        for ours, floor in zip(
            turns["service"]["requests_per_second"],
            turns["floor"]["requests_per_second"],
            strict=True,
        )
    ]
    sync_ratios = [
        ours / floor
        for ours, floor in zip(
            turns["service"]["requests_per_second"],
            turns["floor_sync"]["requests_per_second"],
            strict=True,
        )
    ]
    journal_ratios = [
        ours / unjournalled
        for ours, unjournalled in zip(
            turns["service"]["requests_per_second"],
            turns["service_no_journal"]["requests_per_second"],
            strict=True,
        )
    ]
    figures: dict[str, Any] = {
        "model": f"{version['model_version']} ({version['model_family']}, {version['inference']})",
        "turns": turns,
        "floor_ratio": statistics.median(ratios),
        "floor_ratio_rounds": ratios,
        "floor_sync_ratio": statistics.median(sync_ratios),
        "floor_sync_ratio_rounds": sync_ratios,
        "journal_ratio": statistics.median(journal_ratios),
        "journal_ratio_rounds": journal_ratios,
        "floor_p50_ms": statistics.median(turns["service"]["p50_ms"]),
        "trees": {},
    }
    print_floor_report(figures)  # the headline now; the tree families follow
    for family in [f for f in args.families.split(",") if f]:
        pipeline = largest_pipeline(family)
        cost = in_process_ms(pipeline)
        root = tree_project(family, pipeline, workdir)
        pair = {
            "floor": start_service(workdir, "benchmarks.serving:floor_app()"),
            family: start_service(workdir, STROKE_PROJECT_DIR=str(root)),
        }
        try:
            explained = requests.get(
                pair[family].url + "/version", headers=pair[family].headers, timeout=5
            ).json()
            if not explained["explanations"]:
                raise RuntimeError(f"{family}: served without risk factors: see its log")
            tree_turns = load_in_turns(pair, args.rounds, args.duration, workdir, args.sequential)
        finally:
            for server in pair.values():
                server.stop()
        figures["trees"][family] = {
            "inference": explained["inference"],
            "p50_ms": statistics.median(tree_turns[family]["p50_ms"]),
            "p99_ms": statistics.median(tree_turns[family]["p99_ms"]),
            "floor_p50_ms": statistics.median(tree_turns["floor"]["p50_ms"]),
            "requests_per_second": statistics.median(tree_turns[family]["requests_per_second"]),
            **cost,
        }
    return figures


def print_floor_report(figures: dict[str, Any], *, trees_only: bool = False) -> None:
    """Print the floor comparison (or only its tree families) next to the targets."""
    lines = [] if trees_only else floor_report_lines(figures)
    print("\n".join(lines + tree_lines(figures)), flush=True)


def floor_report_lines(figures: dict[str, Any]) -> list[str]:
    """The service against the floor (and without its journal) next to the targets."""
    turns = figures["turns"]
    lines = [
        f"model: {figures['model']}",
        "in turns (median of rounds; each round: wrk, then p50):",
    ]
    for name, label in (
        ("floor", "floor (bare Flask, same gunicorn settings)"),
        ("service", "make serve (risk factors + live monitoring)"),
        ("floor_sync", "floor under 2 sync workers (the issue's reference)"),
        ("service_no_journal", "make serve, STROKE_MONITOR_JOURNAL=false"),
    ):
        run = turns[name]
        lines.append(
            f"  {label}: {statistics.median(run['requests_per_second']):.0f} req/s "
            f"(rounds: {', '.join(f'{v:.0f}' for v in run['requests_per_second'])}), "
            f"p50 {statistics.median(run['p50_ms']):.2f} ms, "
            f"p99 {statistics.median(run['p99_ms']):.2f} ms, "
            f"{sum(run['errors']):.0f} errors"
        )
    ok_ratio = figures["floor_sync_ratio"] >= TARGETS["floor_ratio"]
    ok_p50 = figures["floor_p50_ms"] <= TARGETS["floor_p50_ms"]
    lines.append(
        f"service / floor (2 sync workers, the issue's floor) req/s: "
        f"{figures['floor_sync_ratio']:.2f}x [{'ok' if ok_ratio else 'MISS'} >= 0.6x] "
        f"(rounds: {', '.join(f'{r:.2f}' for r in figures['floor_sync_ratio_rounds'])}); "
        f"p50 {figures['floor_p50_ms']:.2f} ms [{'ok' if ok_p50 else 'MISS'} <= 0.8 ms]"
    )
    lines.append(
        f"journal on / journal off req/s (what durability costs): "
        f"{figures['journal_ratio']:.2f}x "
        f"(rounds: {', '.join(f'{r:.2f}' for r in figures['journal_ratio_rounds'])})"
    )
    lines.append(
        f"service / floor under the service's own settings (gevent, keep-alive): "
        f"{figures['floor_ratio']:.2f}x "
        f"(rounds: {', '.join(f'{r:.2f}' for r in figures['floor_ratio_rounds'])})"
    )
    return lines


def tree_lines(figures: dict[str, Any]) -> list[str]:
    lines = []
    for family, tree in figures["trees"].items():
        ok = tree["p50_ms"] <= TARGETS["tree_p50_ms"]
        lines.append(
            f"{family} (largest allowed, {tree['inference']}) with risk factors: "
            f"p50 {tree['p50_ms']:.2f} ms, p99 {tree['p99_ms']:.2f} ms "
            f"(floor p50 {tree['floor_p50_ms']:.2f} ms), "
            f"{tree['requests_per_second']:.0f} req/s [{'ok' if ok else 'MISS'} p50 <= 2 ms]; "
            f"in-process score {tree['score_ms']:.3f} ms, "
            f"score + risk factors {tree['explain_ms']:.3f} ms"
        )
    return lines


# --- measurements ----------------------------------------------------------------------


def memory_mb(pid: int) -> tuple[float, float]:
    """Return (RSS, PSS) of a process in MB (PSS splits pages shared copy-on-write)."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


def children(pid: int) -> list[int]:
    """Return the pids whose parent is pid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def healthcare_records() -> list[dict[str, Any]]:
    """Return the 5,110 rows of the larger shipped CSV as JSON records."""
    import math

    from stroke_risk.data.load import load_dataset
    from stroke_risk.data.schema import FEATURE_NAMES

    frame = load_dataset(HEALTHCARE_CSV)[list(FEATURE_NAMES)]
    records = frame.to_dict("records")
    for record in records:
        record["bmi"] = None if math.isnan(record["bmi"]) else float(record["bmi"])
        for name in ("hypertension", "heart_disease"):
            record[name] = int(record[name])
    return records


def batch_round_trip_ms(
    url: str,
    size: int,
    repeats: int,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> list[float]:
    """Return round-trip times of POSTing a size-record batch (body encoded beforehand)."""
    records = healthcare_records()
    body = json.dumps({"instances": [records[i % len(records)] for i in range(size)]}).encode()
    session = requests.Session()
    session.headers.update(headers or {})
    times = []
    for _ in range(repeats + 2):
        started = time.perf_counter()
        response = session.post(
            f"{url}/predict{query}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200 or len(response.json()["predictions"]) != size:
            raise RuntimeError(
                f"batch request failed: {response.status_code} {response.text[:200]}"
            )
        times.append(elapsed)
    return times[2:]  # the first two warm up the worker


def cli_rows_per_minute(rows: int, workdir: Path) -> tuple[float, float, str]:
    """Run python -m app.batch on a rows-line CSV; return (rows/min, seconds, summary)."""
    lines = HEALTHCARE_CSV.read_text().splitlines()
    header, body = lines[0], lines[1:]
    source = workdir / "cli-input.csv"
    with open(source, "w") as handle:
        handle.write(header + "\n")
        for start in range(0, rows, len(body)):
            handle.write("\n".join(body[: min(len(body), rows - start)]) + "\n")
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.batch",
            str(source),
            str(workdir / "cli-output.csv"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    return rows / seconds * 60, seconds, result.stderr.strip().splitlines()[-1]


def start_mlflow(workdir: Path) -> Running:
    """Log the served model to a temporary MLflow store and serve it with 2 workers."""
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "PYTHONPATH": str(REPO_ROOT),  # the pipeline unpickles stroke_risk.data.features
        # mlflow starts `uvicorn` by name: the virtualenv's bin must be on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    code = f"""
import joblib, mlflow, mlflow.sklearn, skops.io
from importlib.metadata import version
mlflow.set_experiment("serving-benchmark")
pipeline = joblib.load({str(REPO_ROOT / "models" / "model.joblib")!r})
# MLflow stores sklearn models with skops, which must be told our own types are safe.
trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
with mlflow.start_run():
    info = mlflow.sklearn.log_model(
        pipeline, name="model", pyfunc_predict_fn="predict_proba", skops_trusted_types=trusted,
        pip_requirements=[f"{{p}}=={{version(p)}}" for p in ("scikit-learn", "pandas", "numpy")],
    )
print(info.model_uri)
"""
    uri = (
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "2",
    ]
    return start(command, env, "/ping", port, workdir / "mlflow.log", timeout=180)


# Target of each headline figure: (limit, higher is better, how the limit reads).
TARGET_TEXT = {
    "startup_seconds": "<= 2 s",
    "p50_ms": "p50 <= 2 ms",
    "requests_per_second": ">= 500 req/s",
    "mlflow_speedup": ">= 5x mlflow",
    "batch_10k_ms": "<= 100 ms",
    "cli_rows_per_minute": ">= 1M rows/min",
}
HIGHER_IS_BETTER = {"requests_per_second", "mlflow_speedup", "cli_rows_per_minute"}


def verdict(figures: dict[str, Any], name: str) -> str:
    """Return '[ok <target>]' or '[MISS <target>]' for a headline figure."""
    value, target = figures[name], TARGETS[name]
    ok = value >= target if name in HIGHER_IS_BETTER else value <= target
    return f"[{'ok' if ok else 'MISS'} {TARGET_TEXT[name]}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--cli-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--floor-only", action="store_true", help="only the floor comparison")
    parser.add_argument("--auth-only", action="store_true", help="only auth on against auth off")
    parser.add_argument("--rounds", type=int, default=3, help="turns of the floor comparison")
    parser.add_argument(
        "--request-path",
        action="store_true",
        help="only the in-process cost of each part of the request path (no servers)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --request-path: cProfile the service's",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="with --floor-only: also measure the request path and put the figures into README",
    )
    parser.add_argument(
        "--sequential",
        type=int,
        default=2000,
        help="requests of the sequential p50 client",
    )
    parser.add_argument(
        "--families",
        default="random_forest,xgboost,ebm,hgb_monotonic",
        help="tree families to train (largest allowed) and time; empty for none",
    )
    args = parser.parse_args()
    if not (REPO_ROOT / "models" / "model.joblib").exists():
        print("models/model.joblib is missing: run `make run` first", file=sys.stderr)
        return 1
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 1
    figures: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="stroke-benchmark-"))
    try:
        if args.request_path:
            figures["request_path_us"] = request_path_costs(workdir, 5 * args.rounds, 500)
            print_request_path(figures["request_path_us"])
            if args.profile:
                profile_service_request(workdir, 2000)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2) + "\n")
            return 0
        load_average = os.getloadavg()[0]
        if args.write_readme:
            if not args.floor_only:
                parser.error("--write-readme goes with --floor-only")
            # First: it sets prometheus_client's multiprocess directory before its import.
            figures["request_path_us"] = request_path_costs(workdir, 5 * args.rounds, 500)
            print_request_path(figures["request_path_us"])
        figures["auth"] = compare_auth(args, workdir)
        if args.auth_only:
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2) + "\n")
            return 0
        figures["floor"] = compare_with_floor(args, workdir)
        if args.floor_only:
            print_floor_report(figures["floor"], trees_only=True)
            if args.write_readme:
                write_readme(figures, load_average)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2) + "\n")
            return 0
        startups = []
        for _ in range(3):
            server = start_service(workdir)
            startups.append(server.startup_seconds)
            server.stop()
        figures["startup_seconds"] = statistics.median(startups)

        server = start_service(workdir)
        try:
            run_wrk(server.url + "/predict", RECORD, 8, 2, workdir, server.headers)  # warm-up
            for connections in (1, 2, 8):
                result = run_wrk(
                    server.url + "/predict",
                    RECORD,
                    connections,
                    args.duration,
                    workdir,
                    server.headers,
                )
                figures[f"single_row_c{connections}"] = result.__dict__
            # Headline: one connection per worker, so latency and throughput are measured
            # together without requests queueing behind each other.
            figures["p50_ms"] = figures["single_row_c2"]["p50_ms"]
            figures["requests_per_second"] = figures["single_row_c2"]["requests_per_second"]
            batch = batch_round_trip_ms(server.url, 10_000, 20, headers=server.headers)
            figures["batch_10k_ms"] = statistics.median(batch)
            figures["batch_10k_p90_ms"] = sorted(batch)[int(0.9 * len(batch)) - 1]
            plain = batch_round_trip_ms(
                server.url, 10_000, 20, "?explain=false", headers=server.headers
            )
            figures["batch_10k_no_explain_ms"] = statistics.median(plain)
            memory = {
                "master": memory_mb(server.process.pid),
                **{f"worker {pid}": memory_mb(pid) for pid in children(server.process.pid)},
            }
            figures["memory_mb"] = {name: {"rss": r, "pss": p} for name, (r, p) in memory.items()}
            version = requests.get(
                server.url + "/version", headers=server.headers, timeout=5
            ).json()
            figures["model"] = (
                f"{version['model_version']} ({version['model_family']}, {version['inference']})"
            )
        finally:
            server.stop()

        if not args.skip_naive:
            naive = start_service(workdir, STROKE_COMPILED_PATH="0")
            try:
                result = run_wrk(
                    naive.url + "/predict",
                    RECORD,
                    8,
                    args.duration,
                    workdir,
                    naive.headers,
                )
                figures["naive_pipeline_c8"] = result.__dict__
            finally:
                naive.stop()

        if not args.skip_mlflow:
            mlflow_server = start_mlflow(workdir)
            try:
                body = {"dataframe_records": [RECORD]}
                run_wrk(mlflow_server.url + "/invocations", body, 8, 2, workdir)
                result = run_wrk(
                    mlflow_server.url + "/invocations", body, 8, args.duration, workdir
                )
                figures["mlflow_c8"] = result.__dict__
                # Same load (8 connections) on both servers.
                ours = figures["single_row_c8"]["requests_per_second"]
                figures["mlflow_speedup"] = ours / result.requests_per_second
            finally:
                mlflow_server.stop()

        rate, seconds, summary = cli_rows_per_minute(args.cli_rows, workdir)
        figures["cli_rows_per_minute"] = rate
        figures["cli_seconds"] = seconds
        figures["cli_summary"] = summary
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def print_report(figures: dict[str, Any]) -> None:
    """Print the figures next to the issue's targets."""
    print_auth_report(figures["auth"])
    print_floor_report(figures["floor"], trees_only=True)
    c2 = figures["single_row_c2"]
    lines = [
        f"model: {figures['model']}",
        f"startup (launch -> /ready 200, median of 3): {figures['startup_seconds']:.2f} s "
        + verdict(figures, "startup_seconds"),
        f"single-row POST /predict, 2 connections (one per worker): p50 {c2['p50_ms']:.2f} ms, "
        f"{c2['requests_per_second']:.0f} req/s, {c2['errors']} errors "
        + verdict(figures, "p50_ms")
        + " "
        + verdict(figures, "requests_per_second"),
    ]
    for connections in (1, 2, 8):
        run = figures[f"single_row_c{connections}"]
        lines.append(
            f"  {connections} connection(s): {run['requests_per_second']:.0f} req/s, "
            f"p50 {run['p50_ms']:.2f} ms, p90 {run['p90_ms']:.2f} ms, "
            f"p99 {run['p99_ms']:.2f} ms, {run['errors']} errors"
        )
    if "naive_pipeline_c8" in figures:
        naive = figures["naive_pipeline_c8"]
        lines.append(
            f"naive handler (STROKE_COMPILED_PATH=0), 8 connections: "
            f"{naive['requests_per_second']:.0f} req/s, p50 {naive['p50_ms']:.2f} ms"
        )
    if "mlflow_c8" in figures:
        mlflow = figures["mlflow_c8"]
        lines.append(
            f"mlflow models serve (2 workers), 8 connections: {mlflow['requests_per_second']:.0f} "
            f"req/s, p50 {mlflow['p50_ms']:.2f} ms, {mlflow['errors']} errors -> this service "
            f"({figures['single_row_c8']['requests_per_second']:.0f} req/s at 8) is "
            f"{figures['mlflow_speedup']:.1f}x " + verdict(figures, "mlflow_speedup")
        )
    lines += [
        f"10,000-record batch request: median {figures['batch_10k_ms']:.1f} ms, "
        f"p90 {figures['batch_10k_p90_ms']:.1f} ms " + verdict(figures, "batch_10k_ms"),
        f"  with ?explain=false: median {figures['batch_10k_no_explain_ms']:.1f} ms",
        f"python -m app.batch: {figures['cli_rows_per_minute']:,.0f} rows/min "
        f"({figures['cli_seconds']:.1f} s incl. start-up) "
        + verdict(figures, "cli_rows_per_minute"),
        f"  {figures['cli_summary']}",
    ]
    for name, memory in figures["memory_mb"].items():
        lines.append(f"memory {name}: RSS {memory['rss']:.0f} MB, PSS {memory['pss']:.0f} MB")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
