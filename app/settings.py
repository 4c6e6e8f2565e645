"""The service's one settings object, read from environment variables (never params.yaml).

Every setting of the server lives here: artifact paths, request limits, live monitoring
(windows, minimum counts, retention, what the prediction log stores), the page and the
gunicorn process (address, workers). ``Settings.from_env()`` reads them (pydantic-settings)
and raises SettingsError with one line naming the variable, its value and what is allowed;
app/gunicorn_conf.py, create_app and the batch CLI all use it, so there is one parser and one
error style.

Every path is resolved against STROKE_PROJECT_DIR (default: the checkout this package
lives in), so the server serves the model revision of the working tree it runs from. The
variables are listed in app/README.md and monitoring/README.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from stroke_risk import paths
from stroke_risk.data.schema import FEATURE_NAMES

DEFAULT_PROJECT_DIR = Path(__file__).resolve().parent.parent
ENV_PREFIX = "STROKE_"

# Paths relative to the project dir unless given absolute.
_DEFAULT_RELATIVE_PATHS: dict[str, Path] = {
    # The data-only serving artifact (never the pickled pipeline, models/model.joblib).
    "model_path": Path(paths.SERVING_MODEL),
    "metadata_path": Path(paths.MODEL_METADATA),
    "reference_profile_path": Path(paths.REFERENCE_PROFILE),
    "metrics_path": Path(paths.METRICS),
    "dvc_lock_path": Path(paths.DVC_LOCK),
    # What `make release` records (stroke_risk/release/publish.py): which release a model is.
    "releases_path": Path("releases.json"),
    # The prediction log of live monitoring: runtime state, git-ignored (/var/).
    "monitor_db_path": Path("var/monitoring/predictions.sqlite"),
}
# Environment variables whose names do not follow STROKE_<FIELD NAME>.
_VARIABLE_NAMES: dict[str, str] = {
    "use_compiled_path": "STROKE_COMPILED_PATH",
    "risk_factor_count": "STROKE_RISK_FACTORS",
    "monitor_db_path": "STROKE_MONITOR_DB",
    "host": "HOST",
    "port": "PORT",
    "workers": "WEB_CONCURRENCY",
    "threads": "WEB_THREADS",
    "worker_class": "WEB_WORKER_CLASS",
    "log_level": "LOG_LEVEL",
}
# Settings whose refused value is never echoed in an error (a URL may carry a password).
_SECRET_BEARING = frozenset({"monitor_database_url"})
# Scopes and credentials: app/credentials.py; what each endpoint needs: app/auth.py.
AUTH_MODES = ("tokens", "open")

PositiveInt = Annotated[int, Field(ge=1)]
CountInt = Annotated[int, Field(ge=0)]
OptionalCount = Annotated[int | None, Field(ge=1)]
OptionalSeconds = Annotated[float | None, Field(gt=0)]


class SettingsError(RuntimeError):
    """An environment variable has a value the service cannot use (one-line message)."""


def variable_name(field_name: str) -> str:
    """Return the environment variable of a settings field."""
    return _VARIABLE_NAMES.get(field_name, ENV_PREFIX + field_name.upper())


class _MappingSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._mapping = dict(environ)
        super().__init__(settings_cls, case_sensitive=True, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._mapping


class Settings(BaseSettings):
    """Every setting of the service; field ``x`` is variable STROKE_X unless listed above.

    ``Settings()`` gives the defaults (it does not read the environment);
    ``Settings.from_env()`` reads it. Instances are immutable: ``model_copy(update=...)``.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # --- artifacts and requests
    project_dir: Path = DEFAULT_PROJECT_DIR
    model_path: Path = DEFAULT_PROJECT_DIR / _DEFAULT_RELATIVE_PATHS["model_path"]
    metadata_path: Path = DEFAULT_PROJECT_DIR / _DEFAULT_RELATIVE_PATHS["metadata_path"]
    reference_profile_path: Path = (
        DEFAULT_PROJECT_DIR / _DEFAULT_RELATIVE_PATHS["reference_profile_path"]
    )
    metrics_path: Path = DEFAULT_PROJECT_DIR / _DEFAULT_RELATIVE_PATHS["metrics_path"]
    dvc_lock_path: Path = DEFAULT_PROJECT_DIR / _DEFAULT_RELATIVE_PATHS["dvc_lock_path"]
    releases_path: Path = DEFAULT_PROJECT_DIR / _DEFAULT_RELATIVE_PATHS["releases_path"]
    monitor_db_path: Path = DEFAULT_PROJECT_DIR / _DEFAULT_RELATIVE_PATHS["monitor_db_path"]
    max_batch_size: PositiveInt = 1000
    max_body_bytes: PositiveInt = 1 << 20
    git_commit: str | None = None
    # Public ed25519 key of the release signer (STROKE_TRUSTED_KEY; stroke_risk/release/signing.py):
    # when set, a model no release signs with it is refused at start-up.
    trusted_key: Path | None = None
    use_compiled_path: bool = True
    risk_factor_count: Annotated[int, Field(ge=1, le=len(FEATURE_NAMES))] = 3
    extensions: Annotated[tuple[str, ...], NoDecode] = ()

    # --- live monitoring (monitoring/README.md)
    # Records compared with the reference profile: the newest N, none older than S seconds.
    monitor_drift_window_records: OptionalCount = 1000
    monitor_drift_window_seconds: OptionalSeconds = 24 * 3600.0
    # Below this many records in the window, drift gauges are not exported.
    monitor_min_drift_records: PositiveInt = 50
    # Labelled predictions used for live ROC-AUC, recall, precision and Brier.
    monitor_performance_window_records: OptionalCount = 5000
    monitor_performance_window_seconds: OptionalSeconds = None
    # Live performance needs this many labels, with this many of each class.
    monitor_min_labels: PositiveInt = 50
    monitor_min_positive_labels: PositiveInt = 10
    monitor_min_negative_labels: PositiveInt = 10
    # How much history the log keeps, and how often a timer enforces it.
    monitor_retention_max_rows: OptionalCount = 100_000
    monitor_retention_max_age_seconds: OptionalSeconds = 30 * 24 * 3600.0
    monitor_retention_interval_seconds: Annotated[float, Field(gt=0)] = 300.0
    # raw: the ten fields as sent; binned: reference-profile bins and categories only.
    monitor_store: Literal["raw", "binned"] = "raw"
    monitor_cache_seconds: Annotated[float, Field(ge=0)] = 2.0
    # Small requests' records are logged by each worker every this many seconds, many per
    # transaction (0: one transaction per request, on the request path).
    monitor_flush_seconds: Annotated[float, Field(ge=0, le=5)] = 0.05
    # The prediction log on PostgreSQL (postgresql://ROLE@HOST:PORT/DB; the password from
    # PGPASSWORD or a pgpass file, never the URL): every host shares it. Unset: the
    # SQLite file monitor_db_path (one host).
    monitor_database_url: str | None = None
    # Buffered records are journalled per worker before the answer (a killed worker's
    # are replayed): stroke_risk/monitoring/journal.py. Off: faster, a crash loses the buffer.
    monitor_journal: bool = True

    # --- authentication (app/auth.py, README "Security")
    # tokens: every scored, labelled or metrics request needs a credential; open: none
    # does (refused nowhere, announced in the log and /version).
    auth: Literal["tokens", "open"] = "tokens"
    # name:scopes:sha256:<hex> lines (python -m app.credentials add ...).
    credentials_file: Path | None = None
    # Key of the session cookies and CSRF tokens of the page (32+ random bytes); without
    # it each start draws one, so sign-ins end at a restart and differ between replicas.
    secret_key_file: Path | None = None
    session_seconds: Annotated[float, Field(gt=0)] = 8 * 3600.0
    # Flask-Limiter limit of POST /feedback per credential, and where it counts:
    # memory:// is per worker process; redis://... or memcached://... is shared.
    feedback_rate_limit: str = "600/minute"
    rate_limit_storage: str = "memory://"
    # A request body must arrive within this many seconds of its headers (408 otherwise).
    body_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0

    # --- the gunicorn process (app/gunicorn_conf.py)
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5000
    workers: PositiveInt = 2
    threads: PositiveInt = 1
    # gevent: each worker serves many connections at once, so slow clients cannot hold
    # it; sync: one request per worker at a time; gthread: WEB_THREADS threads per worker.
    worker_class: Literal["gevent", "sync", "gthread"] = "gevent"
    access_log: str = "-"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"

    _environ: ClassVar[Mapping[str, str] | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if cls._environ is None:
            return (init_settings,)
        return (init_settings, _MappingSource(settings_cls, cls._environ))

    @field_validator(
        "monitor_drift_window_records",
        "monitor_drift_window_seconds",
        "monitor_performance_window_records",
        "monitor_performance_window_seconds",
        "monitor_retention_max_rows",
        "monitor_retention_max_age_seconds",
        mode="before",
    )
    @classmethod
    def _none_disables(cls, value: Any) -> Any:
        """The word "none" switches an optional bound off."""
        return None if isinstance(value, str) and value.strip().lower() == "none" else value

    @field_validator("monitor_database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        """A PostgreSQL URL without password (libpq reads PGPASSWORD or the pgpass file)."""
        from urllib.parse import urlsplit

        if value is None or not value.strip():
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql://ROLE@HOST:PORT/DB URL")
        if urlsplit(value).password is not None:
            raise ValueError("must not hold a password: set PGPASSWORD or a pgpass file")
        return value

    @field_validator("extensions", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("feedback_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("must be a rate limit such as '600/minute'") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _paths_under_project(cls, data: Any) -> Any:
        """Resolve the project dir, then every relative path (and unset ones) under it."""
        if not isinstance(data, dict):
            return data
        root = Path(data.get("project_dir") or DEFAULT_PROJECT_DIR).resolve()
        resolved = {**data, "project_dir": root}
        for name, relative in _DEFAULT_RELATIVE_PATHS.items():
            path = Path(data.get(name) or relative)
            resolved[name] = path if path.is_absolute() else root / path
        return resolved

    @classmethod
    def for_project(cls, project_dir: str | Path, **overrides: Any) -> Settings:
        """Settings with every artifact path at its default place under project_dir."""
        return cls._build({"project_dir": project_dir, **overrides}, None)

    def replace(self, **changes: Any) -> Settings:
        """Return a validated copy with changes (paths relative to the project dir)."""
        return type(self)._build({**self.model_dump(), **changes}, None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment; raises SettingsError naming a bad variable."""
        env = os.environ if environ is None else environ
        wanted = {variable_name(name) for name in cls.model_fields}
        return cls._build({}, {key: value for key, value in env.items() if key in wanted})

    @classmethod
    def _build(cls, values: dict[str, Any], environ: Mapping[str, str] | None) -> Settings:
        cls._environ = environ
        try:
            return cls(**values)
        except ValidationError as error:
            raise SettingsError(describe_error(error, environ or {})) from None
        finally:
            cls._environ = None


# pydantic-settings names a field's variable after its alias: give every field its name.
for _name, _field in Settings.model_fields.items():
    _field.validation_alias = AliasChoices(_name, variable_name(_name))
Settings.model_rebuild(force=True)


def describe_error(error: ValidationError, environ: Mapping[str, str]) -> str:
    """Return one line naming every bad variable, the value given and what is allowed."""
    parts = []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "?"
        variable = variable_name(name) if name in Settings.model_fields else name
        given = environ.get(variable, problem.get("input"))
        if name in _SECRET_BEARING:
            given = "(not shown: it may hold a password)"
        message = str(problem["msg"]).replace("Input should be", "must be")
        parts.append(f"{variable}={str(given)[:80]!r}: {message}")
    return "; ".join(parts)
