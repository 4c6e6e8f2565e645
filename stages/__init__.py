"""The DVC stages, one thin script each (`python -m stages.<name>`, run by dvc.yaml)."""
