"""The library versions a fitted model depends on (model metadata, MLflow requirements)."""

from __future__ import annotations

import platform
from importlib import metadata as importlib_metadata

from stroke_risk.models.families import model_libraries

# Distributions whose versions shape a fitted model or are needed to unpickle it: every
# family's estimator library (stroke_risk.models.families), then the numeric core.
MODEL_LIBRARIES = (*model_libraries(), "numpy", "pandas", "scipy", "joblib")


def library_versions() -> dict[str, str]:
    """{distribution: version} of MODEL_LIBRARIES, plus Python as major.minor.

    Python's patch level is left out on purpose: machines with the same lock but another
    3.11.x must write byte-identical metadata (MLflow records the full version).
    """
    versions = {"python": ".".join(platform.python_version_tuple()[:2])}
    for name in MODEL_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def pip_requirements() -> list[str]:
    """The pins an MLflow model environment needs to load and run the model."""
    pins = [
        f"{name}=={version}"
        for name, version in library_versions().items()
        if name != "python" and version != "not installed"
    ]
    return [*pins, f"mlflow=={importlib_metadata.version('mlflow')}"]
