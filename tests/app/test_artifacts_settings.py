"""Settings from the environment, dvc.lock lookup and the artifact checks (in-process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.artifacts import ArtifactError, find_git_commit, read_lock_hashes, verify_artifacts
from app.factory import ServiceStartError, create_app
from app.settings import DEFAULT_PROJECT_DIR, Settings, SettingsError
from tests.app.conftest import ARTIFACT_PATHS, md5_of, write_lock


def test_settings_defaults_point_into_the_checkout() -> None:
    settings = Settings.from_env({})
    assert settings.project_dir == DEFAULT_PROJECT_DIR
    assert settings.model_path == DEFAULT_PROJECT_DIR / "models" / "serving_model.npz"
    assert settings.dvc_lock_path == DEFAULT_PROJECT_DIR / "dvc.lock"
    assert (settings.max_batch_size, settings.max_body_bytes) == (1000, 1 << 20)
    assert settings.risk_factor_count == 3
    # The prediction log is runtime state under /var/, which .gitignore excludes.
    assert settings.monitor_db_path == DEFAULT_PROJECT_DIR / "var/monitoring/predictions.sqlite"
    assert settings.monitor_db_path.relative_to(DEFAULT_PROJECT_DIR).parts[0] == "var"
    assert "/var/" in (DEFAULT_PROJECT_DIR / ".gitignore").read_text().split()
    assert Settings() == settings


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "STROKE_PROJECT_DIR": str(tmp_path),
            "STROKE_MODEL_PATH": "elsewhere/m.joblib",
            "STROKE_DVC_LOCK_PATH": "/abs/dvc.lock",
            "STROKE_MAX_BATCH_SIZE": "10000",
            "STROKE_MAX_BODY_BYTES": "4096",
            "STROKE_COMPILED_PATH": "0",
            "STROKE_EXTENSIONS": "monitoring.live:init_app, x:y",
            "STROKE_RISK_FACTORS": "10",
            "STROKE_MONITOR_DB": "state/log.sqlite",
        }
    )
    assert settings.model_path == tmp_path / "elsewhere" / "m.joblib"
    assert settings.dvc_lock_path == Path("/abs/dvc.lock")
    assert settings.metadata_path == tmp_path / "models" / "model_metadata.json"
    assert (settings.max_batch_size, settings.max_body_bytes) == (10000, 4096)
    assert settings.use_compiled_path is False
    assert settings.extensions == ("monitoring.live:init_app", "x:y")
    assert settings.risk_factor_count == 10
    assert settings.monitor_db_path == tmp_path / "state" / "log.sqlite"
    absolute = Settings.from_env({"STROKE_MONITOR_DB": "/srv/log.sqlite"}).monitor_db_path
    assert absolute == Path("/srv/log.sqlite")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STROKE_MAX_BATCH_SIZE", "many"),
        ("STROKE_MAX_BODY_BYTES", "0"),
        ("STROKE_COMPILED_PATH", "maybe"),
        ("STROKE_RISK_FACTORS", "0"),
        ("STROKE_RISK_FACTORS", "11"),
        ("STROKE_MONITOR_MIN_LABELS", "many"),
        ("STROKE_MONITOR_DRIFT_WINDOW_RECORDS", "-3"),
        ("STROKE_MONITOR_STORE", "everything"),
        ("WEB_CONCURRENCY", "0"),
        ("PORT", "http"),
    ],
)
def test_bad_setting_is_one_clear_error(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert "\n" not in message and repr(value) in message  # names the value given


def test_monitoring_and_server_settings_from_environment() -> None:
    settings = Settings.from_env(
        {
            "STROKE_MONITOR_DRIFT_WINDOW_RECORDS": "200",
            "STROKE_MONITOR_DRIFT_WINDOW_SECONDS": "none",
            "STROKE_MONITOR_MIN_LABELS": "30",
            "STROKE_MONITOR_MIN_POSITIVE_LABELS": "5",
            "STROKE_MONITOR_RETENTION_MAX_ROWS": "5000",
            "STROKE_MONITOR_CACHE_SECONDS": "0.5",
            "STROKE_MONITOR_STORE": "binned",
            "WEB_CONCURRENCY": "4",
            "PORT": "8123",
            "UNRELATED": "ignored",
        }
    )
    assert settings.monitor_drift_window_records == 200
    assert settings.monitor_drift_window_seconds is None
    assert (settings.monitor_min_labels, settings.monitor_min_positive_labels) == (30, 5)
    assert settings.monitor_retention_max_rows == 5000
    assert (
        settings.monitor_retention_max_age_seconds == Settings().monitor_retention_max_age_seconds
    )
    assert settings.monitor_cache_seconds == 0.5
    assert settings.monitor_store == "binned"
    assert (settings.workers, settings.port) == (4, 8123)


def test_lock_hashes_come_from_stage_outs(repo_root: Path) -> None:
    hashes = read_lock_hashes(repo_root / "dvc.lock")
    assert hashes["models/serving_model.npz"] == md5_of(repo_root / "models" / "serving_model.npz")
    assert "data/raw/brain.csv" not in hashes  # a dependency, not an output


@pytest.fixture
def project(logreg_settings: Settings, tmp_path: Path) -> Settings:
    root = tmp_path / "project"
    shutil.copytree(logreg_settings.project_dir, root)
    return Settings.for_project(root)


def test_verified_artifacts(project: Settings) -> None:
    artifacts = verify_artifacts(project)
    assert artifacts.model_md5 == md5_of(project.model_path)
    assert artifacts.metadata["decision_threshold"] == 0.08
    assert artifacts.training_metrics == json.loads(project.metrics_path.read_text())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: s.model_path.unlink(), "models/serving_model.npz is missing"),
        (lambda s: s.model_path.write_bytes(b"other"), "does not match dvc.lock"),
        (lambda s: s.metadata_path.write_text("{}"), "model_metadata.json does not match dvc.lock"),
        (lambda s: s.dvc_lock_path.unlink(), "dvc.lock not found"),
        (lambda s: s.dvc_lock_path.write_text("stages: [unclosed"), "not valid YAML"),
        (lambda s: s.dvc_lock_path.write_text("schema: '2.0'\nstages: {}\n"), "records no md5"),
    ],
    ids=["missing", "modified", "metadata modified", "no lock", "bad lock", "not in lock"],
)
def test_artifact_problems_are_one_line_with_the_fix(
    project: Settings, damage, message: str
) -> None:
    damage(project)
    with pytest.raises(ArtifactError) as raised:
        verify_artifacts(project)
    text = str(raised.value)
    assert message in text and "\n" not in text
    assert "make run" in text
    with pytest.raises(ServiceStartError, match="cannot start"):
        create_app(project)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("[1, 2]", "not a JSON object"),
        ('{"model_family": "logreg"}', "no numeric decision_threshold"),
        ('{"model_family": "logreg", "decision_threshold": 7}', "not in [0, 1]"),
        ('{"decision_threshold": 0.1}', "no model_family"),
        ("\xff", "unreadable"),
    ],
)
def test_bad_metadata_is_refused(project: Settings, metadata: str, message: str) -> None:
    project.metadata_path.write_bytes(metadata.encode("latin-1"))
    write_lock(project.project_dir, ARTIFACT_PATHS)
    with pytest.raises(ArtifactError, match=message.replace("[", r"\[").replace("]", r"\]")):
        verify_artifacts(project)


def test_missing_training_metrics_only_hide_them(project: Settings) -> None:
    project.metrics_path.unlink()
    assert verify_artifacts(project).training_metrics is None


def test_a_request_can_never_name_the_model_file(project: Settings) -> None:
    """No route takes a path except the page's assets, which come from app/static only."""
    app = create_app(project)
    with_arguments = [rule for rule in app.url_map.iter_rules() if rule.arguments]
    assert [(rule.rule, rule.endpoint) for rule in with_arguments] == [
        ("/static/<path:filename>", "page.static")
    ]
    static_folder = Path(app.blueprints["page"].static_folder or "")
    assert static_folder == DEFAULT_PROJECT_DIR / "app" / "static"
    assert app.static_folder is None  # one owner of /static: the page blueprint
    client = app.test_client()
    assert client.get("/static/page.css").status_code == 200
    for path in (
        "/static/../models/model.joblib",
        "/static/%2e%2e/models/model.joblib",
        "/static/..%2fmodels%2fmodel.joblib",
        f"/static/{project.model_path}",
        "/static//etc/passwd",
    ):
        # werkzeug merges "//" with a redirect, which stays under /static.
        assert client.get(path, follow_redirects=True).status_code == 404, path


def test_a_stale_reference_profile_refuses_to_start(project: Settings) -> None:
    """Drift is measured against the profile: it is checked against dvc.lock like the model."""
    profile = project.reference_profile_path
    profile.write_text(profile.read_text().replace('"n_rows": ', '"n_rows": 1'))
    with pytest.raises(ServiceStartError) as raised:
        create_app(project)
    text = str(raised.value)
    assert "models/reference_profile.json does not match dvc.lock" in text
    assert "make run" in text and "\n" not in text
    # The bare API does not need it.
    assert create_app(project, extensions=()).test_client().get("/ready").status_code == 200
    profile.unlink()
    with pytest.raises(ServiceStartError, match="models/reference_profile.json is missing"):
        create_app(project)


def test_an_unusable_reference_profile_refuses_to_start(project: Settings) -> None:
    profile = json.loads(project.reference_profile_path.read_text())
    del profile["features"]["age"]
    project.reference_profile_path.write_text(json.dumps(profile))
    write_lock(project.project_dir, ARTIFACT_PATHS)
    with pytest.raises(ServiceStartError) as raised:
        create_app(project)
    assert "reference_profile.json cannot be used for drift" in str(raised.value)
    assert "'age' is missing" in str(raised.value) and "\n" not in str(raised.value)


def test_bad_monitoring_settings_refuse_to_start(
    project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # create_app() without settings reads the environment: one parser for every variable.
    monkeypatch.setenv("STROKE_PROJECT_DIR", str(project.project_dir))
    monkeypatch.setenv("STROKE_MONITOR_MIN_LABELS", "many")
    with pytest.raises(ServiceStartError, match="STROKE_MONITOR_MIN_LABELS='many'"):
        create_app()
    monkeypatch.delenv("STROKE_MONITOR_MIN_LABELS")
    blocker = project.project_dir / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(ServiceStartError, match="cannot open the prediction log"):
        create_app(project.replace(monitor_db_path=blocker / "log.sqlite"))


def test_git_commit_is_read_without_git(tmp_path: Path) -> None:
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert find_git_commit(tmp_path) is None
    (git / "packed-refs").write_text(f"# pack-refs\n{'b' * 40} refs/heads/main\n")
    assert find_git_commit(tmp_path) == "b" * 40
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert find_git_commit(tmp_path) == "a" * 40
    (git / "HEAD").write_text("c" * 40)
    assert find_git_commit(tmp_path) == "c" * 40


def test_git_commit_can_be_given(project: Settings) -> None:
    assert verify_artifacts(project.replace(git_commit="deadbeef")).git_commit == "deadbeef"
