"""Static checks of dvc.yaml, params.yaml and conf/: the pipeline graph is what we claim."""

from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT


def load_yaml(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / name).read_text())


def lookup(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def test_every_listed_param_exists():
    params = load_yaml("params.yaml")
    for name, stage in load_yaml("dvc.yaml")["stages"].items():
        for key in stage.get("params", []):
            assert lookup(params, key) is not None, f"{name}: {key}"


def test_only_evaluate_reads_the_test_split():
    stages = load_yaml("dvc.yaml")["stages"]
    readers = [name for name, stage in stages.items() if "data/prepared/test.csv" in stage["deps"]]
    assert readers == ["evaluate"]


def test_every_stage_script_reads_only_listed_sections():
    """A stage must not read a params section dvc.yaml does not list for it."""
    stages = load_yaml("dvc.yaml")["stages"]
    for name, stage in stages.items():
        source = Path(REPO_ROOT / "stages" / f"{name}.py").read_text()
        sections = {key.split(".")[0] for key in stage.get("params", [])}
        for section in (
            "data",
            "split",
            "featurize",
            "cv",
            "tune",
            "validate_tuning",
            "instability",
            "threshold",
            "train",
            "model",
            "mlflow",
            "evaluate",
        ):
            reads = (f'params["{section}"]', f"params['{section}']", f'params, "{section}"')
            if any(pattern in source for pattern in reads):
                assert section in sections, f"stage {name} reads {section} without listing it"


def test_config_groups_exist():
    assert {p.stem for p in (REPO_ROOT / "conf" / "model").glob("*.yaml")} >= {
        "logreg",
        "random_forest",
        "xgboost",
    }
    assert {p.stem for p in (REPO_ROOT / "conf" / "data").glob("*.yaml")} >= {"brain", "healthcare"}
    dvc_config = (REPO_ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in dvc_config and "check_update = false" in dvc_config
    assert "[hydra]" in dvc_config and "enabled = true" in dvc_config


def test_every_stage_lists_every_project_file_it_runs():
    """Derived from the imports: a code change can never leave a stale output 'up to date'."""
    from stroke_risk.code_deps import undeclared_code_deps

    assert undeclared_code_deps(load_yaml("dvc.yaml")["stages"], REPO_ROOT) == []


def test_the_dependency_check_catches_a_missing_file(tmp_path):
    from stroke_risk.code_deps import undeclared_code_deps

    stages = load_yaml("dvc.yaml")["stages"]
    stages["tune"]["deps"].remove("stroke_risk/evaluation/metrics.py")
    stages["evaluate"]["deps"].remove("stroke_risk/models/pipelines.py")  # needed to unpickle
    assert undeclared_code_deps(stages, REPO_ROOT) == [
        "stage 'tune' runs stroke_risk/evaluation/metrics.py but dvc.yaml does not list it in deps",
        "stage 'evaluate' runs stroke_risk/models/pipelines.py but dvc.yaml does not list it"
        " in deps",
    ]


def test_params_yaml_fits_the_typed_sections():
    from stroke_risk.params import validate_all

    assert validate_all(load_yaml("params.yaml")) == []


def test_every_family_has_a_search_space():
    families = {p.stem for p in (REPO_ROOT / "conf" / "model").glob("*.yaml")}
    spaces = {p.stem for p in (REPO_ROOT / "conf" / "search_space").glob("*.yaml")}
    assert families == spaces
    # The registry has a record for exactly the families conf/ offers, at its paths.
    from stroke_risk.models.families import FAMILIES

    assert families == set(FAMILIES)
    for family in FAMILIES.values():
        assert load_yaml(str(family.model_conf)) == {"family": family.name}
        assert (REPO_ROOT / family.search_space).is_file()
