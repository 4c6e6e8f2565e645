"""The release command's pure parts: versions, tags, records, changelog, undo."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from stroke_risk.release.publish import (
    ReleaseError,
    Step,
    add_to_changelog,
    apply_all,
    build_release,
    changelog_section,
    check_release_is_new,
    model_md5_from_lock,
    next_stage_tag,
    parse_version,
    read_releases,
    release_for_model,
    version_tag,
)
from tests.conftest import REPO_ROOT

HEADER = "# Changelog\n\nIntro text.\n\n"


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("1.2.0", "1.2.0"),
        ("v1.2.0", "1.2.0"),
        ("0.1.0-rc.1", "0.1.0-rc.1"),
        ("2.0.0+b7", "2.0.0+b7"),
    ],
)
def test_semantic_versions_are_accepted(text, version):
    assert parse_version(text) == version
    assert version_tag(version) == f"stroke-risk@v{version}"


@pytest.mark.parametrize("text", ["1.2", "01.2.0", "1.2.0.0", "latest", "", "v", "1.2.x"])
def test_other_versions_are_refused_with_the_fix(text):
    with pytest.raises(ReleaseError, match="not a semantic version.*VERSION=1.2.0"):
        parse_version(text)


def test_stage_tags_count_up_and_ignore_lookalikes():
    assert next_stage_tag([]) == "stroke-risk#production#1"
    tags = [
        "stroke-risk#production#1",
        "stroke-risk#production#3",
        "stroke-risk#production#9/x",
        "other#production#12",
        "stroke-risk#staging#7",
    ]
    assert next_stage_tag(tags) == "stroke-risk#production#4"


def test_model_md5_is_the_train_stage_output():
    lock = {
        "stages": {
            "train": {
                "outs": [
                    {"path": "models/model_metadata.json", "md5": "aaa"},
                    {"path": "models/model.joblib", "md5": "bbb"},
                ]
            }
        }
    }
    assert model_md5_from_lock(lock) == "bbb"
    with pytest.raises(ReleaseError, match="no md5 for models/model.joblib.*make run"):
        model_md5_from_lock({"stages": {"train": {"outs": [{"path": "x"}]}}})
    with pytest.raises(ReleaseError, match="no md5"):
        model_md5_from_lock({})


def test_release_for_model_finds_the_newest_release_of_that_file(tmp_path):
    path = tmp_path / "releases.json"
    assert release_for_model("m1", path) is None  # nothing released yet
    releases = [
        {"version": "1.2.0", "model_md5": "m1"},
        {"version": "1.1.0", "model_md5": "m2"},
        {"version": "1.0.0", "model_md5": "m1"},
    ]
    path.write_text(json.dumps(releases))
    assert release_for_model("m1", path) == "1.2.0"
    assert release_for_model("m2", path) == "1.1.0"
    assert release_for_model("m3", path) is None
    # The same file with another threshold (metadata) is another revision.
    path.write_text(json.dumps([{"version": "2.0.0", "model_md5": "m1", "metadata_md5": "t2"}]))
    assert release_for_model("m1", path, metadata_md5="t1") is None
    assert release_for_model("m1", path, metadata_md5="t2") == "2.0.0"
    assert release_for_model("m1", path) == "2.0.0"
    path.write_text("{not json")
    with pytest.raises(ReleaseError, match="not valid JSON"):
        release_for_model("m1", path)
    path.write_text(json.dumps([{"version": "1.0.0"}]))
    with pytest.raises(ReleaseError, match="must be a list of records"):
        release_for_model("m1", path)


def test_existing_versions_and_unchanged_models_are_refused():
    releases = read_releases(
        json.dumps(
            [{"version": "1.1.0", "model_md5": "new"}, {"version": "1.0.0", "model_md5": "old"}]
        )
    )
    with pytest.raises(ReleaseError, match="1.0.0 is already released.*higher VERSION"):
        check_release_is_new(version="1.0.0", model_md5="x", releases=releases, tags=[])
    with pytest.raises(ReleaseError, match="already released"):
        check_release_is_new(
            version="2.0.0", model_md5="x", releases=releases, tags=["stroke-risk@v2.0.0"]
        )
    with pytest.raises(ReleaseError, match="already the latest release, 1.1.0"):
        check_release_is_new(version="1.2.0", model_md5="new", releases=releases, tags=[])
    # Going back to an older model is a release like any other.
    check_release_is_new(version="1.2.0", model_md5="old", releases=releases, tags=[])
    check_release_is_new(version="0.1.0", model_md5="x", releases=[], tags=[])
    # Same model file, another threshold: a new release; the same pair: refused.
    with_metadata = [{"version": "1.1.0", "model_md5": "new", "metadata_md5": "t1"}]
    check_release_is_new(
        version="1.2.0", model_md5="new", metadata_md5="t2", releases=with_metadata, tags=[]
    )
    with pytest.raises(ReleaseError, match="already the latest release"):
        check_release_is_new(
            version="1.2.0", model_md5="new", metadata_md5="t1", releases=with_metadata, tags=[]
        )


@pytest.mark.integration
def test_the_registered_version_is_the_one_with_both_hashes(tmp_path):
    from mlflow.tracking import MlflowClient

    from stroke_risk.release.publish import registered_version_for

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("e")
    client.create_registered_model("stroke-risk")

    def register(model_md5: str, metadata_md5: str | None) -> str:
        run = client.create_run(experiment, tags={"model_md5": model_md5})
        if metadata_md5:
            client.set_tag(run.info.run_id, "metadata_md5", metadata_md5)
        version = client.create_model_version(
            "stroke-risk",
            f"runs:/{run.info.run_id}/model",
            run.info.run_id,
            tags={"model_md5": model_md5},
        )
        return str(version.version)

    first = register("m", "t1")
    second = register("m", "t2")
    register("other", "t1")
    assert registered_version_for(client, "stroke-risk", "m", "t1") == first
    assert registered_version_for(client, "stroke-risk", "m", "t2") == second
    assert registered_version_for(client, "stroke-risk", "m") == second
    with pytest.raises(ReleaseError, match="metadata_md5 t3 \\(another threshold\\)"):
        registered_version_for(client, "stroke-risk", "m", "t3")
    with pytest.raises(
        ReleaseError, match="no version of MLflow model stroke-risk has model_md5 x"
    ):
        registered_version_for(client, "stroke-risk", "x", "t1")
    # Runs that record no metadata hash (older stores): the newest version of the file.
    legacy = register("old", None)
    assert registered_version_for(client, "stroke-risk", "old", "t9") == legacy


@pytest.fixture
def record() -> dict:
    """A record built from the repository's own reports (shape as the pipeline writes it)."""
    evaluation = json.loads((REPO_ROOT / "reports/evaluation.json").read_text())
    metrics = json.loads((REPO_ROOT / "reports/metrics.json").read_text())
    return build_release(
        version="1.2.0",
        model_md5="0123456789abcdef0123456789abcdef",
        registry_version="7",
        source_commit="f" * 40,
        released_on=dt.date(2026, 12, 1),
        evaluation=evaluation,
        metrics=metrics,
        metadata={"model_family": "logreg"},
        data_name="brain",
    )


def test_changelog_section_carries_md5_metrics_with_cis_and_threshold(record):
    evaluation = json.loads((REPO_ROOT / "reports/evaluation.json").read_text())
    section = changelog_section(record, notes="- a note")
    assert section.startswith("## [1.2.0] - 2026-12-01\n")
    assert "md5 `0123456789abcdef0123456789abcdef`" in section
    assert "MLflow version 7 (`@production`)" in section
    assert "git tag `stroke-risk@v1.2.0`" in section
    auc = evaluation["test"]["roc_auc"]
    assert f"| ROC-AUC | {auc['value']:.3f} | {auc['ci_low']:.3f}–{auc['ci_high']:.3f} |" in section
    assert f"Decision threshold: {evaluation['threshold']['value']:.6g}" in section
    assert section.rstrip().endswith("- a note")


@pytest.mark.parametrize(
    ("threshold", "shown"),
    [
        ({"policy": "min_recall", "target_recall": 0.8}, "(min_recall, target recall 0.8)"),
        (
            {"policy": "net_benefit", "harm_benefit_ratio": 0.05},
            "(net_benefit, harm/benefit ratio 0.05)",
        ),
        ({"policy": "youden", "target_recall": 0.8}, "(youden)"),
    ],
)
def test_changelog_names_the_policy_with_the_setting_it_reads(record, threshold, shown):
    section = changelog_section({**record, "threshold": {"value": 0.1, **threshold}}, notes="")
    assert f"- Decision threshold: 0.1 {shown}\n" in section


def test_build_release_refuses_reports_without_cis():
    with pytest.raises(ReleaseError, match="evaluation.json lacks roc_auc.*make run"):
        build_release(
            version="1.0.0",
            model_md5="m",
            registry_version="1",
            source_commit="c",
            released_on=dt.date(2026, 1, 1),
            evaluation={"test": {}, "threshold": {"value": 0.1}},
            metrics={},
            metadata={},
            data_name="brain",
        )


def unreleased_section(changelog: str) -> str:
    return changelog.split("## [Unreleased]\n", 1)[1].split("\n## ", 1)[0]


def test_releases_stack_newest_first_and_leave_the_unreleased_notes(record):
    # The project's notes under [Unreleased] are not the model's: a release leaves them there
    # (the convention CHANGELOG.md declares) and its section holds only its own notes.
    changelog = HEADER + "## [Unreleased]\n\n- new feature\n- fix\n"
    first = add_to_changelog(changelog, changelog_section(record, "- retrained on 2026 data"))
    assert unreleased_section(first).strip() == "- new feature\n- fix"
    assert first.startswith(HEADER + "## [Unreleased]\n\n- new feature\n- fix\n\n## [1.2.0]")
    release_part = first.split("## [1.2.0]")[1]
    assert "- new feature" not in release_part and "- retrained on 2026 data" in release_part
    second_record = {**record, "version": "1.3.0"}
    second = add_to_changelog(first, changelog_section(second_record, ""))
    headings = [line for line in second.splitlines() if line.startswith("## ")]
    assert headings == ["## [Unreleased]", "## [1.3.0] - 2026-12-01", "## [1.2.0] - 2026-12-01"]
    assert second.count("- new feature") == 1 and unreleased_section(second).strip().endswith("fix")


def test_a_changelog_without_unreleased_gets_the_release_before_older_ones(record):
    changelog = HEADER + "## [0.9.0] - 2026-01-01\n\nold\n"
    updated = add_to_changelog(changelog, changelog_section(record, ""))
    headings = [line for line in updated.splitlines() if line.startswith("## ")]
    assert headings == ["## [1.2.0] - 2026-12-01", "## [0.9.0] - 2026-01-01"]
    assert updated.startswith(HEADER) and updated.endswith("old\n")


def test_a_failed_step_undoes_the_earlier_ones_in_reverse(tmp_path, capsys):
    journal: list[str] = []
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"

    def write(path: Path) -> Step:
        def undo() -> None:
            journal.append(f"undo {path.name}")
            path.unlink()

        return Step(f"write {path.name}", lambda: path.write_text("x"), undo)

    def fail() -> None:
        raise OSError("disk full")

    def broken_undo() -> None:
        raise OSError("cannot")

    with pytest.raises(ReleaseError, match="'move alias' failed \\(disk full\\); the 2 step"):
        apply_all([write(first), write(second), Step("move alias", fail, broken_undo)])
    assert journal == ["undo second.txt", "undo first.txt"]
    assert not first.exists() and not second.exists()

    # An undo that fails is named on stderr; the other undos still run.
    journal.clear()
    with pytest.raises(ReleaseError, match="'last' failed"):
        apply_all(
            [write(first), Step("stubborn", lambda: None, broken_undo), Step("last", fail, fail)]
        )
    assert journal == ["undo first.txt"]
    assert "could not undo 'stubborn': cannot" in capsys.readouterr().err
