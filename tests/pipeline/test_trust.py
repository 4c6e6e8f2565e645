"""The experiment loop keeps its promises, end to end with the real DVC, MLflow and gunicorn.

- no hidden tuning state: a polluted local Optuna store cannot change dvc.lock;
- every experiment (queued with 2 workers, temporary) is one complete MLflow run;
- models travel through the DVC remote: a fresh clone serves the same model after a pull,
  and `dvc repro --pull` reuses the run cache instead of retraining;
- a bad CSV leaves every previous output in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from stroke_risk.cli import RESTORE_COMMAND
from stroke_risk.ports import free_port
from tests.pipeline.conftest import TINY, run, workspace_from_template
from tests.processes import start_process, stop_process, wait_until_ready

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def remote(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("remote")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, pipeline_template, remote) -> Path:
    return workspace_from_template(pipeline_template, tmp_path_factory.mktemp("trust"), remote)


def locked_md5(root: Path, path: str) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                return out["md5"]
    raise AssertionError(f"{path} not in dvc.lock")


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def output_bytes(root: Path) -> dict[str, bytes]:
    names = ["params.yaml", "dvc.lock", "data/prepared/train.csv", "data/prepared/test.csv"]
    names += [
        str(p.relative_to(root)) for p in sorted((root / "reports").rglob("*")) if p.is_file()
    ]
    return {name: (root / name).read_bytes() for name in names}


POLLUTE = """
import optuna
from stroke_risk.io import load_params
from stroke_risk.models.tuning import study_name, study_spec_from_params
spec = study_spec_from_params(load_params("params.yaml"), "data/features/train.csv")
storage = "sqlite:///optuna.db"
for name in (study_name(spec.family, spec.fingerprint()), "stroke-logreg-oldcode"):
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                direction="maximize")
    for value in range(40):   # a larger study, with better scores than any real trial
        study.add_trial(optuna.trial.create_trial(
            params={"C": 0.5, "feature_set": "full"}, value=0.99,
            distributions={"C": optuna.distributions.FloatDistribution(0.001, 10, log=True),
                           "feature_set": optuna.distributions.CategoricalDistribution(
                               ["compact", "full"])}))
    study.ask()               # an interrupted trial, left RUNNING
"""


def test_a_polluted_optuna_store_cannot_change_the_lock(workspace):
    before = output_bytes(workspace)
    run(["python", "-c", POLLUTE], workspace)
    run(["dvc", "repro", "--force", "--single-item", "tune"], workspace)
    run(["dvc", "repro"], workspace)
    assert output_bytes(workspace) == before
    assert "up to date" in run(["dvc", "status"], workspace).stdout
    tuning = json.loads((workspace / "reports/tuning.json").read_text())
    assert tuning["study"]["storage"] == "in-memory"
    assert tuning["study"]["trials_used"] == [0, 1]


def served_model_version(root: Path, scratch: Path) -> str:
    """Start the real service (gunicorn, as `make serve` does) in root; return /version's."""
    port = free_port()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("STROKE_", "WEB_"))
    }
    env |= {"PORT": str(port), "HOST": "127.0.0.1", "STROKE_MONITOR_DB": str(scratch / "p.db")}
    log_path = scratch / "server.log"
    command = ["python", "-m", "gunicorn", "-c", "app/gunicorn_conf.py", "app:create_app()"]
    env["PATH"] = run(["sh", "-c", "echo $PATH"], root).stdout.strip()
    server = start_process(command, log_path=log_path, cwd=root, env=env)
    url = f"http://127.0.0.1:{port}/version"
    try:
        wait_until_ready(url, server, timeout=120, describe=log_path.read_text)
        return requests.get(url, timeout=30).json()["model_version"]
    finally:
        stop_process(server, timeout=20)


def test_a_fresh_clone_pulls_and_serves_the_same_model(workspace, remote, tmp_path):
    pushed = run(["python", "-m", "stroke_risk.commands.dvc_remote", "push"], workspace)
    assert "pushed" in pushed.stdout.lower() or "up to date" in pushed.stdout.lower()
    model_md5 = locked_md5(workspace, "models/model.joblib")

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], clone)
    run(["python", "-m", "stroke_risk.commands.dvc_remote", "pull"], clone)
    assert md5_of(clone / "models/model.joblib") == model_md5
    assert served_model_version(clone, tmp_path) in model_md5

    # The run cache travelled too: a clone with no outputs reproduces without training.
    second = tmp_path / "second"
    run(["git", "clone", "-q", str(workspace), str(second)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], second)
    repro = run(["dvc", "repro", "--pull"], second)
    assert "Running stage" not in repro.stdout, repro.stdout
    assert md5_of(second / "models/model.joblib") == model_md5

    missing = tmp_path / "missing"
    run(["git", "clone", "-q", str(workspace), str(missing)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(tmp_path / "nowhere")], missing)
    failed = run(["python", "-m", "stroke_risk.commands.dvc_remote", "pull"], missing, check=False)
    assert failed.returncode == 1
    assert "DVC remote 'local'" in failed.stderr and "does not exist" in failed.stderr


class Exploit:
    """Unpickling this writes `marker`: the side effect of a planted model."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).write_text('ran')",))


def plant_object(remote: Path, md5: str, data: bytes) -> None:
    """Write data where the DVC remote keeps the object of hash md5 (DVC makes it 0444)."""
    target = remote / "files" / "md5" / md5[:2] / md5[2:]
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.chmod(0o644)
    target.write_bytes(data)


def start_service(root: Path, scratch: Path) -> tuple[bool, str]:
    """Start the real gunicorn in root; return (answered /ready, its log) and stop it."""
    port = free_port()
    env = {key: v for key, v in os.environ.items() if not key.startswith(("STROKE_", "WEB_"))}
    env |= {"PORT": str(port), "HOST": "127.0.0.1", "STROKE_MONITOR_DB": str(scratch / "p.db")}
    env["PATH"] = run(["sh", "-c", "echo $PATH"], root).stdout.strip()
    log_path = scratch / f"server-{port}.log"
    command = ["python", "-m", "gunicorn", "-c", "app/gunicorn_conf.py", "app:create_app()"]
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    return True, log_path.read_text()
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        return False, log_path.read_text()
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=20)


def test_a_pickle_planted_in_the_remote_or_its_run_cache_never_runs(workspace, remote, tmp_path):
    """Issue 19: whoever can write the DVC remote can swap the objects a pull checks out, or
    rewrite the train entry of the run cache that `dvc repro --pull` trusts. The service
    loads only the data-only artifact, so the planted pickle never runs: it is refused in
    one line (as models/model.joblib it would never even be read)."""
    run(["python", "-m", "stroke_risk.commands.dvc_remote", "push"], workspace)
    marker = tmp_path / "ran"
    payload = pickle.dumps(Exploit(marker))
    payload_md5 = hashlib.md5(payload).hexdigest()

    # 1. The remote's objects of the train outputs replaced by the pickle: DVC checks the
    # hash of what it pulls, so nothing is checked out and the service finds no model.
    swapped_remote = tmp_path / "swapped-remote"
    shutil.copytree(remote, swapped_remote)
    clone = tmp_path / "swapped"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    for path in ("models/model.joblib", "models/serving_model.npz"):
        plant_object(swapped_remote, locked_md5(clone, path), payload)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(swapped_remote)], clone)
    run(["dvc", "pull"], clone, check=False)
    served, log = start_service(clone, tmp_path)
    assert not served and "models/serving_model.npz is missing" in log, log
    assert not marker.exists()

    # 2. The run cache's train entries rewritten to name the pickle as both model files. A
    # clone whose dvc.lock does not pin the train outputs (a new experiment, a lost lock)
    # takes them from the run cache with `dvc repro --pull`, and the lock then vouches for
    # the pickle: the md5 check passes, and the service still refuses it.
    cache_remote = tmp_path / "run-cache-remote"
    shutil.copytree(remote, cache_remote)
    plant_object(cache_remote, payload_md5, payload)
    rewritten = 0
    for entry in (cache_remote / "runs").rglob("*"):
        if not entry.is_file() or "models/serving_model.npz" not in entry.read_text():
            continue
        document = yaml.safe_load(entry.read_text())
        for out in document.get("outs", []):
            if out["path"] in ("models/model.joblib", "models/serving_model.npz"):
                out.update(md5=payload_md5, size=len(payload))
        entry.chmod(0o644)
        entry.write_text(yaml.safe_dump(document))
        rewritten += 1
    assert rewritten, "no train entry in the remote's run cache"
    victim = tmp_path / "victim"
    run(["git", "clone", "-q", str(workspace), str(victim)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(cache_remote)], victim)
    (victim / "dvc.lock").unlink()
    # Up to train only: evaluate would unpickle the planted pipeline, which is the pipeline
    # trusting its own outputs (README "What is trusted"), not the service.
    repro = run(["dvc", "repro", "--pull", "train"], victim, timeout=600)
    assert "Running stage 'train'" not in repro.stdout, repro.stdout  # restored, not trained
    assert md5_of(victim / "models/serving_model.npz") == payload_md5, "entry not taken"
    assert locked_md5(victim, "models/serving_model.npz") == payload_md5
    served, log = start_service(victim, tmp_path)
    assert not served and "models/serving_model.npz cannot be served" in log, log
    assert not marker.exists(), "a planted pickle ran"
    # The pipeline stages do load the pickles they wrote (evaluate unpickles
    # models/model.joblib): README "What is trusted" says so.


def test_a_bad_csv_leaves_every_previous_output_in_place(workspace, tmp_path):
    before = output_bytes(workspace)
    bad = tmp_path / "bad.csv"
    lines = (workspace / "data/raw/brain.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("age")] = "sixty"
    bad.write_text("\n".join([lines[0], *lines[1:5], ",".join(row), *lines[6:]]) + "\n")
    failed = run(["dvc", "exp", "run", "-S", f"data.raw_path={bad}"], workspace, check=False)
    assert failed.returncode != 0
    assert "column 'age': 1 row(s) not numeric: 'sixty' (file lines 6)" in failed.stderr
    assert RESTORE_COMMAND in failed.stderr
    after = output_bytes(workspace)
    assert {name for name in before if before[name] != after.get(name)} == {"params.yaml"}
    run(["sh", "-c", RESTORE_COMMAND], workspace)
    assert output_bytes(workspace) == before


def mlflow_runs(root: Path) -> list[dict]:
    script = (
        "import json, mlflow\n"
        "mlflow.set_tracking_uri('sqlite:///mlflow.db')\n"
        "client = mlflow.MlflowClient()\n"
        "runs = mlflow.search_runs(search_all_experiments=True, output_format='list')\n"
        "out = []\n"
        "for r in runs:\n"
        "    v = client.get_model_version('stroke-risk', r.data.tags['registered_version'])\n"
        "    path = mlflow.artifacts.download_artifacts(f'models:/stroke-risk/{v.version}')\n"
        "    out.append({'tags': r.data.tags, 'metrics': r.data.metrics,\n"
        "                'version_md5': v.tags['model_md5'], 'artifact_dir': path})\n"
        "print(json.dumps(out))\n"
    )
    return json.loads(run(["python", "-c", script], root).stdout.splitlines()[-1])


def test_every_experiment_is_tracked_once(workspace):
    for name, override in (("q-xgb", "model=xgboost"), ("q-thr", "threshold.target_recall=0.7")):
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", override, *TINY], workspace)
    run(["dvc", "queue", "start", "-j", "2"], workspace)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            status = run(["dvc", "queue", "status"], workspace).stdout
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(3)
    finally:
        # The queue's workers are daemons of their own: stop them whatever happened.
        run(["dvc", "queue", "stop", "--kill"], workspace, check=False)
    assert status.count("Success") == 2, status
    run(
        ["dvc", "exp", "run", "--temp", "-n", "t-thr", "-S", "threshold.target_recall=0.9", *TINY],
        workspace,
        timeout=600,
    )

    runs = mlflow_runs(workspace)
    by_experiment = {}
    for logged in runs:
        by_experiment.setdefault(logged["tags"]["dvc_experiment"], []).append(logged)
    for name in ("q-xgb", "q-thr", "t-thr", "workspace"):
        assert len(by_experiment.get(name, [])) == 1, (name, sorted(by_experiment))
        logged = by_experiment[name][0]
        # The MLflow run carries the experiment's name (DVC_EXP_NAME), not a random one.
        expected_run_name = name if name != "workspace" else "workspace@"
        assert logged["tags"]["mlflow.runName"].startswith(expected_run_name), logged["tags"]
        assert {"test_roc_auc", "cv_roc_auc", "test_recall"} <= set(logged["metrics"])
        assert logged["version_md5"] == logged["tags"]["model_md5"]
        artifact = Path(logged["artifact_dir"]) / "artifacts" / "model.joblib"
        assert md5_of(artifact) == logged["tags"]["model_md5"]

    # The experiment's own dvc.lock names the md5 its run carries; syncing adds nothing.
    run(["dvc", "exp", "apply", "q-xgb"], workspace)
    assert (
        locked_md5(workspace, "models/model.joblib")
        == by_experiment["q-xgb"][0]["tags"]["model_md5"]
    )
    synced = run(["python", "-m", "stroke_risk.commands.mlflow_runs", "sync"], workspace)
    assert "already logged" in synced.stdout
    run(["dvc", "repro"], workspace)
    assert len(mlflow_runs(workspace)) == len(runs)
