"""The service's own settings, read from environment variables (never from params.yaml).

Every path is resolved against STROKE_PROJECT_DIR (default: the checkout this package
lives in), so the server serves the model revision of the working tree it runs from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stroke_risk.schema import FEATURE_NAMES

DEFAULT_PROJECT_DIR = Path(__file__).resolve().parent.parent


class SettingsError(RuntimeError):
    """An environment variable has a value the service cannot use (one-line message)."""


@dataclass(frozen=True)
class Settings:
    """Where the artifacts are and the request limits; see app/README.md for the variables."""

    project_dir: Path = DEFAULT_PROJECT_DIR
    model_path: Path = DEFAULT_PROJECT_DIR / "models" / "model.joblib"
    metadata_path: Path = DEFAULT_PROJECT_DIR / "models" / "model_metadata.json"
    reference_profile_path: Path = DEFAULT_PROJECT_DIR / "models" / "reference_profile.json"
    metrics_path: Path = DEFAULT_PROJECT_DIR / "reports" / "metrics.json"
    dvc_lock_path: Path = DEFAULT_PROJECT_DIR / "dvc.lock"
    monitor_db_path: Path = DEFAULT_PROJECT_DIR / "var" / "monitoring" / "predictions.sqlite"
    max_batch_size: int = 1000
    max_body_bytes: int = 1 << 20
    git_commit: str | None = None
    use_compiled_path: bool = True
    risk_factor_count: int = 3
    extensions: tuple[str, ...] = ()

    @classmethod
    def for_project(cls, project_dir: str | Path, **overrides: object) -> Settings:
        """Settings with every artifact path at its default place under project_dir."""
        root = Path(project_dir).resolve()
        paths = {name: root / relative for name, relative in _DEFAULT_RELATIVE_PATHS.items()}
        return cls(project_dir=root, **{**paths, **overrides})  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from STROKE_* variables; raises SettingsError naming a bad variable."""
        env = os.environ if environ is None else environ
        root = Path(env.get("STROKE_PROJECT_DIR") or DEFAULT_PROJECT_DIR).resolve()
        paths = {
            name: _resolve(root, env.get(variable) or str(_DEFAULT_RELATIVE_PATHS[name]))
            for name, variable in _PATH_VARIABLES.items()
        }
        return cls(
            project_dir=root,
            max_batch_size=_positive_int(env, "STROKE_MAX_BATCH_SIZE", cls.max_batch_size),
            max_body_bytes=_positive_int(env, "STROKE_MAX_BODY_BYTES", cls.max_body_bytes),
            git_commit=env.get("STROKE_GIT_COMMIT") or None,
            use_compiled_path=_boolean(env, "STROKE_COMPILED_PATH", True),
            risk_factor_count=_bounded_int(
                env, "STROKE_RISK_FACTORS", cls.risk_factor_count, len(FEATURE_NAMES)
            ),
            extensions=tuple(
                item.strip() for item in env.get("STROKE_EXTENSIONS", "").split(",") if item.strip()
            ),
            **paths,  # type: ignore[arg-type]
        )


_DEFAULT_RELATIVE_PATHS: dict[str, Path] = {
    "model_path": Path("models/model.joblib"),
    "metadata_path": Path("models/model_metadata.json"),
    "reference_profile_path": Path("models/reference_profile.json"),
    "metrics_path": Path("reports/metrics.json"),
    "dvc_lock_path": Path("dvc.lock"),
    # The prediction log of live monitoring: runtime state, git-ignored (/var/). The same
    # variable and default as stroke_risk.live_monitoring.store_path_from_environ.
    "monitor_db_path": Path("var/monitoring/predictions.sqlite"),
}
_PATH_VARIABLES: dict[str, str] = {
    "model_path": "STROKE_MODEL_PATH",
    "metadata_path": "STROKE_METADATA_PATH",
    "reference_profile_path": "STROKE_REFERENCE_PROFILE_PATH",
    "metrics_path": "STROKE_METRICS_PATH",
    "dvc_lock_path": "STROKE_DVC_LOCK_PATH",
    "monitor_db_path": "STROKE_MONITOR_DB",
}


def _resolve(root: Path, value: str) -> Path:
    """Return value as an absolute path, relative paths taken from the project dir."""
    path = Path(value)
    return path if path.is_absolute() else root / path


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    """Return the variable as a positive int (default when unset)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise SettingsError(f"{name}={raw!r} must be at least 1")
    return value


def _bounded_int(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    """Return the variable as an int from 1 to maximum (default when unset)."""
    value = _positive_int(env, name, default)
    if value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}")
    return value


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Return the variable as a bool: 1/true/yes/on or 0/false/no/off (default when unset)."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use 1 or 0")
