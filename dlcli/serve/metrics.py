"""What `GET /metrics` tells Prometheus: requests by endpoint and status, their latency,
the samples answered and the size of each model call, with `prometheus_client`.

With `--workers N` the workers count into files of one shared folder
(`prometheus_client`'s multiprocess mode, `SHARED_ENV` naming the folder), and whichever
worker a scrape reaches answers the sum over all of them: counters and histograms add up,
and requests in flight are the live workers' sum.
"""

from __future__ import annotations

import os

PATHS = ("/predict", "/healthz", "/metadata", "/metrics", "/openapi.json", "/docs")
LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SHARED_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's name for the shared folder


def make_metrics() -> Metrics:
    """The metrics of this process: its own, or (with `SHARED_ENV` set, in a worker of
    several) counted into the shared folder."""
    return SharedMetrics() if os.environ.get(SHARED_ENV) else Metrics()


class Metrics:
    """One process's metrics, in its own registry; `in_flight` is read when scraped."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dlcli_requests",
            "HTTP requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dlcli_request_seconds",
            "Time from a request's arrival to its answer, by endpoint",
            ["endpoint"],
            buckets=LATENCY,
            registry=self.registry,
        )
        self.samples = Counter(
            "dlcli_samples", "Samples the model answered", registry=self.registry
        )
        self.batches = Histogram(
            "dlcli_batch_samples",
            "Samples per model call (concurrent requests are answered together)",
            buckets=BATCH,
            registry=self.registry,
        )
        self._in_flight_gauge(Gauge)
        self.in_flight = 0
        self._children: dict = {}

    def _in_flight_gauge(self, gauge) -> None:
        # read when scraped: a gauge's lock twice a request costs more
        gauge(
            "dlcli_requests_in_flight", "Requests being answered", registry=self.registry
        ).set_function(lambda: self.in_flight)

    def request(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in PATHS else "other"  # no label per stray path
        key = (endpoint, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(endpoint, str(status)),
                self.latency.labels(endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)

    def batch(self, rows: int) -> None:
        """One model call of `rows` samples."""
        self.batches.observe(rows)
        self.samples.inc(rows)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.scraped()), CONTENT_TYPE_LATEST

    def scraped(self):
        return self.registry


class SharedMetrics(Metrics):
    """A worker's metrics, written to the shared folder; a scrape reads all workers'."""

    def _in_flight_gauge(self, gauge) -> None:
        import atexit

        from prometheus_client import multiprocess

        atexit.register(multiprocess.mark_process_dead, os.getpid())  # not live once it ends
        self._gauge = gauge(  # the sum over the live workers
            "dlcli_requests_in_flight",
            "Requests being answered",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    @property
    def in_flight(self) -> int:
        return self._count

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self._count = value
        self._gauge.set(value)

    def scraped(self):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry


__all__ = ["SHARED_ENV", "Metrics", "SharedMetrics", "make_metrics"]
