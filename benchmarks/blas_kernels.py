"""Same bytes whichever BLAS kernel or thread count: `dvc repro --force` under each, compared.

For every variant of the OpenBLAS environment below, a scratch copy of the repository (tracked
files as they are in the working tree) runs `dvc repro --force`; the benchmark prints whether
its `dvc.lock` (which holds the md5 of every output: model, out-of-fold predictions, reports)
equals the working tree's, and which outputs differ if not.

It also measures the noise the rounding in stroke_risk/models/reproducible_fit.py absorbs: the final
model refitted WITHOUT rounding under each variant, the largest relative difference of its
coefficients from the as-found fit, and the chance that noise of that size moves a rounded
parameter across a grid boundary (2 x noise / grid spacing per parameter, summed over the
parameters a run rounds).

The variables are set only in the environment of the child processes; the variant "both
unset" removes OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE together. Run by hand, not by
`make test` (about a minute per variant):

    python -m benchmarks.blas_kernels
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# name -> variables to set (None: remove). "as found" leaves the environment untouched.
VARIANTS: dict[str, dict[str, str | None]] = {
    "as found": {},
    "OPENBLAS_CORETYPE=Haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "OPENBLAS_CORETYPE=Nehalem": {"OPENBLAS_CORETYPE": "Nehalem"},
    "OPENBLAS_CORETYPE=SandyBridge": {"OPENBLAS_CORETYPE": "SandyBridge"},
    "both unset": dict.fromkeys(BLAS_VARIABLES),
    "OPENBLAS_NUM_THREADS=1": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    "OPENBLAS_NUM_THREADS=4": {"OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "4"},
}

RAW_FIT = """
import json, sys
import numpy as np
from stroke_risk.io import load_params
from stroke_risk.models.pipelines import build_model_pipeline
from stroke_risk.params import FeaturizeParams, ModelParams, TrainParams, read_section
from stroke_risk.data.schema import TARGET
from stroke_risk.data.prepared import feature_config_from_params, read_prepared

params = load_params()
family = read_section(params, "model", ModelParams).family
featurize = read_section(params, "featurize", FeaturizeParams)
config = feature_config_from_params(featurize.model_dump())
tuning = json.load(open("reports/tuning.json"))
train = read_prepared("data/features/train.csv")
y = train.pop(TARGET).to_numpy()
seed = read_section(params, "train", TrainParams).seed
model = build_model_pipeline(family, tuning["best_params"], feature_config=config, seed=seed)
estimator = model.fit(train, y).steps[-1][1]
values = [getattr(estimator, name, None) for name in ("coef_", "intercept_")]
arrays = [np.ravel(v) for v in values if v is not None]
np.save(sys.argv[1], np.concatenate(arrays) if arrays else np.zeros(0))
"""


def snapshot_working_tree(destination: Path) -> None:
    """Tracked and unignored files as they are in the working tree now (edits made while the
    benchmark runs do not reach the later variants)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO_ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, destination / name)


def variant_environment(changes: dict[str, str | None]) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    environment = {**os.environ, "PATH": path, "MLFLOW_DISABLE_TELEMETRY": "true"}
    for name, value in changes.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def run(command: list[str], cwd: Path, environment: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def output_hashes(lock_text: str) -> dict[str, str]:
    """path -> md5 of every out in a dvc.lock (deps and params left out)."""
    import yaml

    lock = yaml.safe_load(lock_text)
    return {
        out["path"]: out.get("md5", "")
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }


def run_variant(
    name: str, changes: dict[str, str | None], snapshot: Path, scratch: Path
) -> dict[str, object]:
    root = scratch / name.replace(" ", "_").replace("=", "_")
    shutil.copytree(snapshot, root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    environment = variant_environment(changes)
    start = time.perf_counter()
    run(["dvc", "repro", "--force", "-q"], root, environment)
    seconds = time.perf_counter() - start
    coefficients = root / "raw_coefficients.npy"
    run([sys.executable, "-c", RAW_FIT, str(coefficients)], root, environment)
    return {
        "seconds": seconds,
        "lock": (root / "dvc.lock").read_text(),
        "raw": np.load(coefficients),
    }


def main() -> None:
    shown = {name: os.environ.get(name, "(unset)") for name in BLAS_VARIABLES}
    print(f"environment as found: {shown}")
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="stroke-blas-") as scratch:
        snapshot = Path(scratch) / "snapshot"
        snapshot_working_tree(snapshot)
        committed_lock = (snapshot / "dvc.lock").read_text()
        committed = output_hashes(committed_lock)
        for name, changes in VARIANTS.items():
            results[name] = run_variant(name, changes, snapshot, Path(scratch))
            print(f"  ran {name} in {results[name]['seconds']:.1f} s", flush=True)

    reference = results["as found"]["raw"]
    assert isinstance(reference, np.ndarray)
    print()
    print("| variant | dvc.lock equal to the working tree's | outputs that differ | raw noise |")
    print("|---|---|---|---|")
    worst_noise = 0.0
    all_equal = True
    for name, result in results.items():
        lock = str(result["lock"])
        produced = output_hashes(lock)
        differing = sorted(p for p in committed if produced.get(p) != committed[p])
        equal = lock == committed_lock
        all_equal &= equal
        raw = result["raw"]
        assert isinstance(raw, np.ndarray)
        scale = np.maximum(np.abs(reference), np.finfo(float).tiny)
        noise = float(np.max(np.abs(raw - reference) / scale)) if raw.size else 0.0
        worst_noise = max(worst_noise, noise)
        print(
            f"| {name} | {'yes' if equal else 'NO'} | {', '.join(differing) or '-'} | {noise:.1e} |"
        )
    from stroke_risk.models.reproducible_fit import SIGNIFICANT_BITS

    spacing = 2.0**-SIGNIFICANT_BITS
    per_parameter = 2 * worst_noise / spacing
    print()
    print(
        f"raw noise: largest relative difference of the unrounded coefficients from the "
        f"as-found fit ({reference.size} parameters): {worst_noise:.1e}"
    )
    print(
        f"grid: {SIGNIFICANT_BITS} mantissa bits (relative spacing {spacing:.1e}); chance a "
        f"parameter rounds differently: <= {per_parameter:.1e}; for a run's ~"
        f"{16 * reference.size} rounded parameters (final fit + 15 CV fits): "
        f"<= {16 * reference.size * per_parameter:.1e}"
    )
    print(f"verdict: {'identical bytes under every variant' if all_equal else 'BYTES DIFFER'}")
    print(json.dumps({"identical": all_equal, "raw_noise": worst_noise}))


if __name__ == "__main__":
    main()
