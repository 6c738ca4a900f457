"""What `GET /metrics` tells Prometheus: requests by endpoint and status, their latency,
the samples answered and the size of each model call, with `prometheus_client`.

With `--workers N` each worker counts its own requests (a scrape reaches one of them);
label them by the `instance` Prometheus scrapes, or run one worker per container.
"""

from __future__ import annotations

PATHS = ("/predict", "/healthz", "/metadata", "/metrics", "/openapi.json", "/docs")
LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
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
        self.in_flight = 0  # read when scraped: a gauge's lock twice a request costs more
        Gauge(
            "dlcli_requests_in_flight", "Requests being answered", registry=self.registry
        ).set_function(lambda: self.in_flight)
        self._children: dict = {}

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
        self.batches.observe(rows)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["Metrics"]
