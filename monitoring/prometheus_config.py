"""Render a runnable copy of monitoring/prometheus/prometheus.yml for a given app address.

The committed prometheus.yml is written for docker compose (every replica of the service
``app``, found by DNS). To run the prometheus binary against apps on this machine, render a
copy with static targets (repeat ``--target`` for several replicas):

    .venv/bin/python -m monitoring.prometheus_config --target 127.0.0.1:8000 \\
        --out /tmp/stroke-prometheus/prometheus.yml

The copy points ``rule_files`` at the repository's rule files (absolute paths), so the
rules stay one file; tests use the same function with their own port.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS_DIR = Path(__file__).resolve().parent / "prometheus"
DEFAULT_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
APP_JOB = "stroke-risk"


def render_prometheus_config(
    target: str | Sequence[str],
    *,
    source: Path = DEFAULT_CONFIG,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    alertmanager: str | None = None,
    self_address: str | None = None,
    credentials_file: Path | None = None,
) -> dict[str, Any]:
    """The committed config with the app job scraping ``target`` ("host:port", or several).

    The app job's service discovery is replaced by a static list of those targets.
    Rule files become absolute paths next to ``source``. Without ``alertmanager`` the
    alerting section is dropped (alerts are still evaluated and visible in Prometheus);
    without ``self_address`` the self-scrape job is dropped. The app job sends the bearer
    token in ``credentials_file`` (a credential with scope metrics); without one it sends
    none, for an app that runs open (bound to loopback without credentials).
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    if scrape_interval:
        config["global"]["scrape_interval"] = scrape_interval
        # Prometheus refuses a scrape timeout longer than the interval.
        config["global"]["scrape_timeout"] = scrape_interval
    if evaluation_interval:
        config["global"]["evaluation_interval"] = evaluation_interval
    config["rule_files"] = [
        str((source.parent / f).resolve()) for f in config.get("rule_files", [])
    ]
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    else:
        config.pop("alerting", None)
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] == APP_JOB:
            job.pop("dns_sd_configs", None)
            targets = [target] if isinstance(target, str) else list(target)
            job["static_configs"] = [{"targets": targets}]
            if credentials_file is not None:
                job["authorization"] = {"type": "Bearer", "credentials_file": str(credentials_file)}
            else:
                job.pop("authorization", None)  # an app running open (loopback, no credentials)
        elif job["job_name"] == "prometheus":
            if not self_address:
                continue
            job["static_configs"] = [{"targets": [self_address]}]
            # A local Prometheus runs without the stack's web config (and its secrets).
            job.pop("basic_auth", None)
        jobs.append(job)
    if not any(job["job_name"] == APP_JOB for job in jobs):
        raise ValueError(f"{source} has no scrape job named {APP_JOB!r}")
    config["scrape_configs"] = jobs
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.prometheus_config", description=__doc__
    )
    parser.add_argument(
        "--target",
        action="append",
        required=True,
        help="host:port of an app replica's /metrics (repeat for several replicas)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where to write the rendered config"
    )
    parser.add_argument("--scrape-interval", default=None, help="e.g. 5s (default: as committed)")
    parser.add_argument("--evaluation-interval", default=None)
    parser.add_argument("--alertmanager", default=None, help="host:port of an Alertmanager")
    parser.add_argument("--self-address", default=None, help="host:port Prometheus listens on")
    parser.add_argument(
        "--credentials-file",
        type=Path,
        default=None,
        help="file holding the app's bearer token (scope metrics)",
    )
    args = parser.parse_args(argv)
    config = render_prometheus_config(
        args.target,
        scrape_interval=args.scrape_interval,
        evaluation_interval=args.evaluation_interval,
        alertmanager=args.alertmanager,
        self_address=args.self_address,
        credentials_file=args.credentials_file,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(config, sort_keys=False))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
