"""Prometheus metrics of the service (names from docs/CONTRACTS.md).

Under gunicorn the client's multiprocess mode is used: app/gunicorn_conf.py sets
PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported, every worker writes its
values to files there, and /metrics merges the files of all workers, so whichever worker
answers the scrape reports the same totals. Without that variable (tests, the batch CLI)
each ServiceMetrics has its own registry.

Extensions (e.g. the live-drift monitor) add collectors with ``register_collector``;
those are collected by the worker serving the scrape.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import Counter as PrometheusCounter
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROBABILITY_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def multiprocess_dir() -> str | None:
    """Return PROMETHEUS_MULTIPROC_DIR when set to an existing directory, else None."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


class ServiceMetrics:
    """The service's metric objects and the registry /metrics exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        self.exposition = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            self.exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposition)
        registry = self.registry
        self.requests = PrometheusCounter(
            "stroke_http_requests",
            "HTTP requests by route template, method and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "stroke_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.validation_failures = PrometheusCounter(
            "stroke_validation_failures",
            "Invalid fields in rejected records",
            ["field"],
            registry=registry,
        )
        self.probability = Histogram(
            "stroke_predicted_probability",
            "Predicted stroke probability per scored record",
            buckets=PROBABILITY_BUCKETS,
            registry=registry,
        )
        self.predictions = PrometheusCounter(
            "stroke_predictions", "Scored records by decision", ["predicted"], registry=registry
        )
        # Export both decisions from the start: rate() and increase() miss a series' first
        # value, so a counter that appears with the first positive would hide it.
        self._decision_counters = {
            decision: self.predictions.labels(decision) for decision in ("positive", "negative")
        }
        # Labelled children by (endpoint, method, status): labels() costs a lock and a
        # dict lookup per call, and the label sets are few (route templates).
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.model_info = Gauge(
            "stroke_model_info",
            "The model answering requests (value 1); release: its version in releases.json "
            "or unreleased",
            ["model_version", "model_family", "git_commit", "release"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.threshold = Gauge(
            "stroke_model_decision_threshold",
            "Decision threshold in use",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.reference_positive_rate = Gauge(
            "stroke_reference_positive_rate",
            "Expected positive rate at the threshold (out-of-fold, training)",
            multiprocess_mode="livemax",
            registry=registry,
        )

    def register_collector(self, collector: Collector) -> None:
        """Expose a custom collector on /metrics (collected in the answering worker)."""
        self.exposition.register(collector)

    def set_model(
        self,
        version: str,
        family: str,
        commit: str | None,
        threshold: float,
        positive_rate: float | None,
        release: str = "unreleased",
    ) -> None:
        """Record which model answers (and which release it is) and its threshold."""
        self.model_info.labels(version, family, commit or "unknown", release).set(1)
        self.threshold.set(threshold)
        if positive_rate is not None:
            self.reference_positive_rate.set(positive_rate)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency."""
        key = (endpoint, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, method, str(status)),
                self.latency.labels(endpoint),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_predictions(self, probability: np.ndarray, decision: np.ndarray) -> None:
        """Count scored records and their probabilities (one pass for a whole batch)."""
        if len(probability) == 1:
            self.probability.observe(float(probability[0]))
        else:
            observe_many(self.probability, probability)
        positives = int(np.count_nonzero(decision))
        if positives:
            self._decision_counters["positive"].inc(positives)
        if len(decision) - positives:
            self._decision_counters["negative"].inc(len(decision) - positives)

    def observe_validation_failures(self, fields: list[str]) -> None:
        """Count one failure per invalid field (one write per distinct field)."""
        for name, count in Counter(fields).items():
            self.validation_failures.labels(name).inc(count)

    def render(self) -> tuple[bytes, str]:
        """Return (exposition text, content type) of all workers' metrics."""
        return generate_latest(self.exposition), CONTENT_TYPE_LATEST


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Observe every value at once: one write per bucket instead of per value.

    Histogram.observe costs a lock and two file writes per value in multiprocess mode,
    ~30 ms for a 10,000-record batch. This adds the same per-bucket counts and sum that
    repeated observe() calls would (a test checks the two agree). It uses the client's
    private _upper_bounds/_buckets/_sum, so prometheus-client is pinned.
    """
    bounds: Any = histogram._upper_bounds  # noqa: SLF001
    # observe() files a value under the first bucket with value <= bound.
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    # NaN would land past the last bucket; observe() does not count it in a bucket either.
    counts = counts[: len(bounds)]
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):  # noqa: SLF001
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(np.sum(values)))  # noqa: SLF001
