"""Pipeline benchmark: prints timing and quality figures against the project's targets.

Runs in a scratch copy of the repository (tracked files only, no Optuna or MLflow store),
so it measures what a fresh clone experiences:

- cold `dvc repro --force` with the default tuning budget (target <= 60 s), and the time of
  the tune, validate_tuning and instability stages each rerun alone;
- no-op `dvc repro` (target <= 3 s);
- which stages rerun after changing only an evaluate param (target: evaluate and the report
  that reads its outputs, nothing upstream);
- a second `dvc repro --force` leaves dvc.lock and reports/ byte-identical;
- repeated-CV quality of the default model (targets: ROC-AUC >= 0.850, AP >= 0.21,
  Brier <= 0.042).

Usage: python -m benchmarks.pipeline
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def sh(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "MLFLOW_DISABLE_TELEMETRY": "true"}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = sh(command, cwd)
    return time.perf_counter() - start, result.stdout


def fingerprint(root: Path) -> dict[str, str]:
    files = [root / "dvc.lock", *sorted((root / "reports").rglob("*"))]
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file()
    }


def copy_tracked_files(destination: Path) -> None:
    names = sh(["git", "ls-files", "-z"], REPO_ROOT).stdout.split("\0")
    for name in filter(None, names):
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    sh(["git", "init", "-q"], destination)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="stroke-bench-") as scratch:
        root = Path(scratch)
        copy_tracked_files(root)
        committed = fingerprint(root)

        cold, _ = timed(["dvc", "repro", "--force"], root)
        after_cold = fingerprint(root)
        noop, _ = timed(["dvc", "repro"], root)
        second, _ = timed(["dvc", "repro", "--force"], root)
        after_second = fingerprint(root)
        # The internal-validation stages' share of a cold run (rerun alone, same outputs).
        stage_seconds = {
            stage: timed(["dvc", "repro", "--force", "--single-item", stage], root)[0]
            for stage in ("tune", "validate_tuning", "instability")
        }

        params = (root / "params.yaml").read_text()
        (root / "params.yaml").write_text(
            params.replace("bootstrap_resamples: 1000", "bootstrap_resamples: 999")
        )
        _, output = timed(["dvc", "repro"], root)
        reran = [line.split("'")[1] for line in output.splitlines() if line.startswith("Running")]

        metrics = json.loads((root / "reports" / "metrics.json").read_text())

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    identical_cold = after_cold == committed
    identical_second = after_second == after_cold
    cv = metrics["cv"]
    rows = [
        ("cold dvc repro --force", f"{cold:.1f} s", "<= 60 s", cold <= 60),
        ("no-op dvc repro", f"{noop:.2f} s", "<= 3 s", noop <= 3),
        ("second dvc repro --force", f"{second:.1f} s", "-", True),
        *(
            (f"  of which {stage} (alone)", f"{seconds:.1f} s", "-", True)
            for stage, seconds in stage_seconds.items()
        ),
        (
            "stages rerun after evaluate-only change",
            ",".join(reran),
            "evaluate,report",
            reran == ["evaluate", "report"],
        ),
        ("dvc.lock + reports identical to committed", str(identical_cold), "True", identical_cold),
        ("identical after second --force", str(identical_second), "True", identical_second),
        (
            "CV ROC-AUC (mean ± std)",
            f"{cv['roc_auc']:.4f} ± {cv['roc_auc_std']:.4f}",
            ">= 0.850",
            cv["roc_auc"] >= 0.850,
        ),
        (
            "CV average precision",
            f"{cv['average_precision']:.4f}",
            ">= 0.21",
            cv["average_precision"] >= 0.21,
        ),
        ("CV Brier", f"{cv['brier']:.4f}", "<= 0.042", cv["brier"] <= 0.042),
        (
            "nested CV ROC-AUC (mean ± std)",
            f"{cv['roc_auc_nested']:.4f} ± {cv['roc_auc_nested_std']:.4f}",
            "-",
            True,
        ),
        ("prediction instability MAPE", f"{metrics['instability']['mape']:.4f}", "-", True),
        ("test ROC-AUC", f"{metrics['test']['roc_auc']:.4f}", "-", True),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target, ok in rows:
        print(f"{name:<{width}}  {value:>18}  target {target:<9} {verdict(ok)}")
    if not identical_cold:
        print(
            "differences vs committed:",
            sorted(k for k in committed if committed.get(k) != after_cold.get(k)),
        )


if __name__ == "__main__":
    main()
