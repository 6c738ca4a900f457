"""`dlcli serve`: each test starts the real server (`python -m dlcli serve`) on a free port of
127.0.0.1 and talks to it over real HTTP. Answers are checked against `dlcli predict` on the
same rows; hostile clients get a 4xx with a JSON body and never stop the server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    CENSUS,
    CENSUS_COLUMNS,
    CENSUS_DATA,
    CONFIGS,
    TINY,
    deep_update,
    run_dlcli,
    run_python,
)
from test_processes import free_port
from typer.testing import CliRunner

from dlcli.cli import app

pytestmark = pytest.mark.slow

COLUMNS = CENSUS_COLUMNS[:-1]  # the features; the target is "income"
FAST = {"output": {"tensorboard": False, "plots": False, "baselines": "none"}}


def train(base: Path, config: dict, name: str) -> Path:
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**config, "name": name}))
    result = CliRunner().invoke(
        app, ["train", str(path), "--runs-dir", str(base / "runs"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A digits MLP with a verified ONNX copy, a census-like table (text categories, '?'
    cells) and a regression, trained for real (briefly)."""
    base = tmp_path_factory.mktemp("serve")
    digits = train(base, TINY, "digits")
    done = run_dlcli("export", digits, "--format", "onnx")  # on TensorFlow: a process of its own
    assert done.returncode == 0, done.stderr
    census = train(
        base,
        deep_update(
            FAST,
            {
                "seed": 3,
                "data": CENSUS_DATA,
                "model": {
                    "layers": [
                        {"type": "Dense", "units": 16, "activation": "relu"},
                        {"type": "Dense"},
                    ]
                },
                "compile": {"optimizer": "adam", "metrics": ["accuracy"]},
                "training": {"epochs": 2, "batch_size": 128},
            },
        ),
        "census",
    )
    regression = train(
        base,
        deep_update(
            FAST,
            {
                "data": {"source": "diabetes"},
                "model": {
                    "layers": [
                        {"type": "Dense", "units": 16, "activation": "relu"},
                        {"type": "Dense", "units": 1},
                    ]
                },
                "compile": {"optimizer": "adam", "loss": "mse", "metrics": ["mae"]},
                "training": {"epochs": 3},
            },
        ),
        "regression",
    )
    return {"digits": digits, "census": census, "regression": regression, "base": base}


class Server:
    """`dlcli serve RUN` in a process of its own, ready (GET /healthz answers 200)."""

    def __init__(self, run: Path, *extra, wrapper: str | None = None):
        self.port = free_port()
        command = ["serve", str(run), "--port", str(self.port), *map(str, extra)]
        start = (
            [sys.executable, "-c", wrapper, *command]
            if wrapper
            else [sys.executable, "-m", "dlcli", *command]
        )
        self.process = subprocess.Popen(
            start,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
            start_new_session=True,  # its workers too are ended with it, whatever happens
        )
        deadline = time.time() + 180
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"dlcli serve ended: {self.process.communicate()[1]}")
            with contextlib.suppress(OSError):
                if self.get("/healthz")[0] == 200:
                    break
            assert time.time() < deadline, "dlcli serve never answered /healthz"
            time.sleep(0.1)

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()

    def get(self, path: str, headers=None):
        status, body, _ = self.request("GET", path, headers=headers)
        return status, body

    def post(self, payload, headers=None) -> tuple[int, dict]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, answer, _ = self.request(
            "POST", "/predict", body, {"Content-Type": "application/json", **(headers or {})}
        )
        return status, json.loads(answer)

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=60)
        return self.process.returncode, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate()


def predicted(run: Path, path: Path) -> list[dict]:
    done = run_dlcli("predict", run, path, "--proba", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["predictions"]


def same_as_predict(answer: dict, rows: list[dict]) -> None:
    assert [r["prediction"] for r in rows] == answer["predictions"]
    for row, probabilities in zip(rows, answer["probabilities"]):
        for label, p in probabilities.items():
            assert abs(row[f"proba_{label}"] - p) < 2e-6


def census_rows() -> tuple[list[list[str]], list[dict]]:
    """Ten census rows with '?' cells, one with a country never seen, as the file holds them
    (cells) and as a client sends them (values by column, '?' and null for missing)."""
    cells = [
        [c.strip() for c in line.split(",")][: len(COLUMNS)]
        for line in CENSUS.read_text().splitlines()
        if "?" in line
    ][:9]
    cells.append(
        [
            "51",
            "Private",
            "150000",
            "Bachelors",
            "13",
            "Never-married",
            "Sales",
            "Female",
            "40",
            "Atlantis",
        ]
    )
    rows = []
    for i, row in enumerate(cells):
        values = {}
        for name, cell in zip(COLUMNS, row):
            if cell == "?":
                values[name] = None if i % 2 else "?"
            elif name in ("age", "fnlwgt", "education_num", "hours_per_week"):
                values[name] = int(cell) if i % 3 else cell  # a number, or its text
            else:
                values[name] = cell
        rows.append(values)
    return cells, rows


def test_answers_equal_predict_for_arrays_tables_and_regression(runs, tmp_path):
    from sklearn.datasets import load_digits

    pixels = load_digits().data[:12]
    np.savetxt(tmp_path / "digits.csv", pixels, delimiter=",", fmt="%g")
    expected = predicted(runs["digits"], tmp_path / "digits.csv")
    for engine in ("onnxruntime", "keras"):
        with Server(
            runs["digits"], "--engine", "onnx" if engine == "onnxruntime" else "keras"
        ) as server:
            status, meta = server.get("/metadata")
            assert status == 200 and json.loads(meta)["engine"].startswith(engine)
            status, answer = server.post({"inputs": pixels.tolist()})
            assert status == 200, answer
            same_as_predict(answer, expected)
            code, err = server.stop()
            assert code == 0, err

    cells, rows = census_rows()
    with open(tmp_path / "census.csv", "w", newline="") as handle:
        csv.writer(handle, delimiter=",").writerows(
            [[f" {c}" if i else c for i, c in enumerate(r)] for r in cells]
        )
    expected = predicted(runs["census"], tmp_path / "census.csv")
    with Server(runs["census"]) as server:
        status, answer = server.post({"rows": rows})
        assert status == 200, answer
        same_as_predict(answer, expected)
        assert answer["unseen"] == {"native_country": ["Atlantis"]}
        # the target, when a row carries it, is ignored as predict ignores it
        status, again = server.post({"rows": [{**rows[0], "income": ">50K"}]})
        assert status == 200 and again["predictions"][0] == answer["predictions"][0]

    x = np.random.default_rng(0).normal(0, 0.05, (5, 10))
    np.savetxt(tmp_path / "diabetes.csv", x, delimiter=",")
    expected = predicted(runs["regression"], tmp_path / "diabetes.csv")
    with Server(runs["regression"]) as server:
        status, answer = server.post({"inputs": x.tolist()})
        assert status == 200 and "probabilities" not in answer
        assert np.allclose(answer["predictions"], [r["prediction"] for r in expected], atol=1e-4)


def test_the_onnx_copy_answers_without_tensorflow_or_keras(runs):
    with Server(runs["digits"]) as server:
        assert server.post({"inputs": [[0.0] * 64]})[0] == 200
        # Keras cannot run without a backend's native library: none is in the process.
        libraries = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "onnxruntime" in libraries
        for backend in ("tensorflow", "jaxlib", "torch"):
            assert backend not in libraries, backend
        code, err = server.stop()
    assert code == 0, err
    assert "answered by onnxruntime (export/onnx/model.onnx)" in err


def test_hostile_requests_get_a_4xx_naming_the_row_and_field(runs):
    key = "s3cret-key"
    with Server(runs["census"], "--api-key", key) as server:
        auth = {"X-API-Key": key}
        _, rows = census_rows()
        cases = [
            (b"{not json", 400, None),
            (b"[" * 10_000 + b"]" * 10_000, 400, None),
            (json.dumps({"rows": [rows[0], {**rows[1], "bogus": 1}]}).encode(), 422, (1, "bogus")),
            (
                json.dumps({"rows": [{k: v for k, v in rows[0].items() if k != "sex"}]}).encode(),
                422,
                (0, "sex"),
            ),
            (
                json.dumps({"rows": [rows[0], rows[1], {**rows[2], "age": "forty"}]}).encode(),
                422,
                (2, "age"),
            ),
            (
                json.dumps({"rows": [{**rows[0], "hours_per_week": "NaN"}]}).encode(),
                422,
                (0, "hours_per_week"),
            ),
            (json.dumps({"rows": [{**rows[0], "age": "inf"}]}).encode(), 422, (0, "age")),
            (
                json.dumps({"rows": [{**rows[0], "workclass": ["a"]}]}).encode(),
                422,
                (0, "workclass"),
            ),
            (json.dumps({"rows": [rows[0]] * 10_001}).encode(), 413, None),
            (json.dumps({"inputs": [[1.0] * 64]}).encode(), 422, None),
            (b"[1, 2]", 422, None),
        ]
        for body, status, where in cases:
            got, answer = server.post(body, auth)
            assert got == status, (body[:80], answer)
            assert isinstance(answer["error"], str) and answer["error"]
            if where:
                assert (answer["row"], answer["field"]) == where, answer
        # a body over 16 MB: 413, read by the client (not a reset connection)
        status, answer = server.post(b'{"rows": ["' + b"x" * (17 << 20) + b'"]}', auth)
        assert status == 413 and "16 MB" in answer["error"]
        # the API key: none, wrong, as a bearer token; /healthz stays open for probes
        assert server.post({"rows": rows[:1]})[0] == 401
        assert server.post({"rows": rows[:1]}, {"X-API-Key": "wrong"})[0] == 401
        assert server.get("/metadata")[0] == 401
        assert server.post({"rows": rows[:1]}, {"Authorization": f"Bearer {key}"})[0] == 200
        assert server.get("/healthz")[0] == 200
        # after all of it, the server still answers
        status, answer = server.post({"rows": rows}, auth)
        assert status == 200 and len(answer["predictions"]) == len(rows)
        code, err = server.stop()
    assert code == 0 and "Traceback" not in err, err


async def _slow_clients(port: int, count: int) -> list[bytes]:
    """`count` clients that send a request's headers a byte a second; what each gets back."""

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in b"POST /predict HTTP/1.1\r\nHost: x\r\n":
            writer.write(bytes([byte]))
            try:
                await writer.drain()
                return await asyncio.wait_for(reader.read(4096), 1.0)
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                return b"reset"
        return b"never cut off"

    return await asyncio.gather(*[one() for _ in range(count)])


async def _flood(port: int, count: int, body: bytes) -> list[int]:
    """`count` connections at once, each sending one request; the status each gets."""

    async def one():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            line = await asyncio.wait_for(reader.readline(), 60)
            writer.close()
            return int(line.split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    return await asyncio.gather(*[one() for _ in range(count)])


def test_slow_clients_and_a_flood_do_not_stop_the_others(runs):
    body = json.dumps({"inputs": [[1.0] * 64]}).encode()
    with Server(runs["digits"], "--request-timeout", "3") as server:
        import threading

        cut = {}
        slow = threading.Thread(
            target=lambda: cut.update(got=asyncio.run(_slow_clients(server.port, 200)))
        )
        slow.start()
        time.sleep(1)
        # the others are answered while 200 slow clients hold connections
        for _ in range(20):
            assert server.post(json.loads(body))[0] == 200
        slow.join(60)
        assert len(cut["got"]) == 200
        assert all(b" 408 " in got.split(b"\r\n")[0] or got == b"" for got in cut["got"]), {
            g[:40] for g in cut["got"]
        }
        statuses = asyncio.run(_flood(server.port, 500, body))
        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        assert statuses.count(200) >= 250
        assert server.post(json.loads(body))[0] == 200
        code, err = server.stop()
    assert code == 0 and "Traceback" not in err, err


def _large_bodies(port: int, count: int, size: int, meanwhile) -> list[tuple[int, str, dict]]:
    """`count` requests of `size` bytes each (valid JSON: one digit behind leading spaces),
    each sent but for its last 64 KB before the next begins, so that the server holds them
    all at once; `meanwhile()`; then the rest of each. (status, Retry-After, answer) each."""
    payload = json.dumps({"inputs": [[1.0] * 64]}).encode()
    body = b" " * (size - len(payload)) + payload
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
    )
    sockets = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=60)
        connection.sendall(head + body[: -(64 << 10)])
        sockets.append(connection)
    meanwhile()
    got = []
    for connection in sockets:
        with contextlib.suppress(OSError):  # a refused request's connection may be closed
            connection.sendall(body[-(64 << 10) :])
        response = http.client.HTTPResponse(connection)
        response.begin()
        got.append(
            (response.status, response.getheader("retry-after"), json.loads(response.read()))
        )
        connection.close()
    return got


def test_a_flood_of_large_bodies_gets_503s_not_the_memory(runs):
    """At most 256 MB of bodies held at once: of 17 bodies of 15.5 MB held together, one is
    refused (503, Retry-After); the others, and a small request meanwhile, are answered.
    Twice: what a request held is given back once it is answered."""
    with Server(runs["digits"]) as server:
        small = []
        for _ in range(2):
            got = _large_bodies(
                server.port,
                17,
                int(15.5 * (1 << 20)),
                lambda: small.append(server.post({"inputs": [[1.0] * 64]})[0]),
            )
            assert sorted(status for status, _, _ in got) == [200] * 16 + [503], got
            refused = next((retry, answer) for status, retry, answer in got if status == 503)
            assert refused[0] == "1" and "retry" in refused[1]["error"], refused
            assert all(len(a["predictions"]) == 1 for status, _, a in got if status == 200)
        assert small == [200, 200]
        code, err = server.stop()
    assert code == 0 and "Traceback" not in err, err


def test_sigterm_and_ctrl_c_finish_the_request_in_flight_then_exit_0(runs):
    for sig in (signal.SIGTERM, signal.SIGINT):
        with Server(runs["digits"]) as server:
            body = json.dumps({"inputs": [[2.0] * 64] * 3}).encode()
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:20]
            )
            time.sleep(0.5)
            server.process.send_signal(sig)
            time.sleep(0.5)
            assert server.process.poll() is None  # it waits for the request in flight
            sock.sendall(body[20:])
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
            sock.close()
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            assert len(json.loads(reply.split(b"\r\n\r\n", 1)[1])["predictions"]) == 3
            assert server.process.wait(60) == 0, server.process.communicate()[1]


class Connection:
    """One raw HTTP/1.1 connection: `send(bytes)`, `response()` the next whole answer."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return chunk

    def response(self, head_only: bool = False) -> tuple[bytes, bytes]:
        """(status line and headers, body) of the next answer."""
        while b"\r\n\r\n" not in self.buffer:
            assert self.recv(), f"closed mid-answer: {self.buffer!r}"
        head, rest = self.buffer.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])
        length = 0 if head_only else length
        while len(rest) < length:
            assert self.recv(), f"closed mid-body: {self.buffer!r}"
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
        self.buffer = rest[length:]
        return head, rest[:length]


def post_request(body: bytes, *headers: bytes) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_one_connection_keeps_alive_pipelines_heads_and_continues(runs):
    body = json.dumps({"inputs": [[3.0] * 64]}).encode()
    with Server(runs["digits"]) as server:
        expected = server.post(json.loads(body))[1]
        client = Connection(server.port)
        client.send(post_request(body))
        head, answer = client.response()
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(answer) == expected
        # two requests in one write are answered in their order
        client.send(post_request(body) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(client.response()[1]) == expected
        assert json.loads(client.response()[1])["status"] == "ok"
        # HEAD: the head alone, and the connection goes on
        client.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = client.response(head_only=True)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head.lower()
        # a client that waits for "100 Continue" before its body gets it, then its answer
        client.send(
            post_request(b"", b"Expect: 100-continue").replace(
                b"Length: 0", b"Length: %d" % len(body)
            )
        )
        while b"\r\n\r\n" not in client.buffer:
            assert client.recv()
        assert client.buffer == b"HTTP/1.1 100 Continue\r\n\r\n", client.buffer
        client.buffer = b""
        client.send(body)
        head, answer = client.response()
        assert head.startswith(b"HTTP/1.1 200") and json.loads(answer) == expected
        # idle past keep-alive's 5 s, the connection is closed by the server
        idle = time.monotonic()
        assert client.recv() == b""
        assert time.monotonic() - idle > 4.5
        client.sock.close()
        code, err = server.stop()
    assert code == 0 and "Traceback" not in err, err


def test_metadata_metrics_and_the_openapi_page(runs):
    metrics = json.loads((runs["census"] / "metrics.json").read_text())
    with Server(runs["census"]) as server:
        _, rows = census_rows()
        for _ in range(3):
            assert server.post({"rows": rows[:2]})[0] == 200
        assert server.post(b"nope")[0] == 400
        status, body = server.get("/metadata")
        meta = json.loads(body)
        assert status == 200 and meta["run"] == runs["census"].name
        assert meta["classes"] == ["<=50K", ">50K"]
        assert meta["request"] == "rows"
        columns = {c["name"]: c for c in meta["inputs"]}
        assert list(columns) == COLUMNS
        assert columns["age"]["type"] == "numeric"
        assert "Private" in columns["workclass"]["categories"]
        assert meta["metrics"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
        status, text = server.get("/metrics")
        text = text.decode()
        assert status == 200
        assert 'dlcli_requests_total{endpoint="/predict",status="200"} 3.0' in text
        assert 'dlcli_requests_total{endpoint="/predict",status="400"} 1.0' in text
        assert 'dlcli_request_seconds_count{endpoint="/predict"} 4.0' in text
        assert "dlcli_samples_total 6.0" in text
        status, body = server.get("/openapi.json")
        document = json.loads(body)
        assert status == 200 and "/predict" in document["paths"]
        assert "rows" in json.dumps(document["components"])
        status, page = server.get("/docs")
        assert status == 200 and b"swagger" in page.lower()
        assert server.get("/nowhere")[0] == 404
        assert server.stop()[0] == 0


def _workers(pid: int) -> list[int]:
    """The worker processes of the server `pid` (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [p for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _shared_folder(pid: int) -> str | None:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return found[0].decode() if found else None


def _samples_by_worker(shared: str) -> dict[int, float]:
    """`dlcli_samples_total` as each worker wrote it into the shared folder."""
    from prometheus_client.mmap_dict import MmapedDict

    counts = {}
    for name in os.listdir(shared):
        if name.startswith("counter_"):
            pid = int(name.removesuffix(".db").split("_")[-1])
            for key, value, *_ in MmapedDict.read_all_values_from_file(f"{shared}/{name}"):
                if json.loads(key)[1] == "dlcli_samples_total":
                    counts[pid] = value
    return counts


def test_workers_share_the_port_and_metrics_count_for_all_of_them(runs):
    with Server(runs["digits"], "--workers", "2") as server:
        deadline = time.time() + 120
        while True:  # both workers up: each has written its counters into the shared folder
            workers = [p for p in _workers(server.process.pid) if _shared_folder(p)]
            shared = _shared_folder(workers[0]) if workers else None
            if len(workers) == 2 and set(workers) <= set(_samples_by_worker(shared)):
                break
            assert time.time() < deadline, "two workers never started"
            time.sleep(0.2)
        sent = 0  # a connection each: the kernel hands them to either worker
        while sent < 40 or min(_samples_by_worker(shared).values()) == 0:
            assert server.post({"inputs": [[1.0] * 64]})[0] == 200
            sent += 1
            assert time.time() < deadline, f"one worker answered all {sent} requests"
        by_worker = _samples_by_worker(shared)
        assert set(by_worker) == set(workers) and sum(by_worker.values()) == sent, by_worker
        scrapes = settled = 0
        while settled < 4:  # whichever worker answers the scrape: the totals of both
            status, text = server.get("/metrics")
            text = text.decode()
            assert status == 200
            assert f"dlcli_samples_total {sent:.1f}" in text, text
            # A request is counted just after its answer went out (its worker lowers the
            # in-flight gauge, then counts it): once every earlier request is counted, the
            # scrape itself is the only one in flight. A scrape reads the workers' files one
            # after another, so one may see the other worker's gauge just before it fell
            # and its count just after it rose: never fewer than the scrape itself, and
            # four scrapes that see only themselves.
            answered = dict(
                re.findall(r'dlcli_requests_total{endpoint="(.*?)",status="200"} (.*)', text)
            )
            in_flight = float(re.search(r"^dlcli_requests_in_flight (.*)$", text, re.MULTILINE)[1])
            assert in_flight >= 1.0, text
            if (
                answered.get("/predict") == f"{sent:.1f}"
                and float(answered.get("/metrics", 0)) == scrapes
                and in_flight == 1.0
            ):
                settled += 1
            scrapes += 1
            assert time.time() < deadline, text
        code, err = server.stop()
    assert code == 0 and "Traceback" not in err, err
    assert not Path(shared).exists()


def test_a_busy_port_a_missing_run_and_an_onnx_engine_without_a_copy_exit_2(runs):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_dlcli("serve", runs["digits"], "--port", port)
    assert done.returncode == 2 and "choose another with --port" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_dlcli("serve", "no-such-run", "--runs-dir", runs["base"] / "runs")
    assert done.returncode == 2 and "no run 'no-such-run'" in done.stderr
    done = run_dlcli("serve", runs["census"], "--engine", "onnx", "--port", free_port())
    assert done.returncode == 2 and "dlcli export" in done.stderr, done.stderr


def test_concurrent_requests_are_answered_by_one_model_call(runs):
    # In-process: requests queued on one turn of the event loop form one batch.
    code = f"""
import asyncio, json
from dlcli.serve.app import Front
from dlcli.serve.served import load_served
front = Front(load_served({str(runs["digits"])!r}))
sizes = []
front.batcher.on_batch = sizes.append
from sklearn.datasets import load_digits
bodies = [{{"inputs": [row]}} for row in load_digits().data[:10].tolist()]  # digits 0 to 9
row = bodies[0]["inputs"][0]
wrong = [{{"inputs": [row, row[:-1]]}}, {{"inputs": [row, row, ["NaN"] * 64]}}]
async def main():
    together = await asyncio.gather(
        *[front.answer(body) for body in bodies[:5] + wrong + bodies[5:]], return_exceptions=True
    )
    alone = [await front.answer(body) for body in bodies]  # one model call each
    # up to 1,024 samples a call, in the order they came: 600 | 600 + 400 | 624
    await asyncio.gather(*[front.answer({{"inputs": [row] * n}}) for n in (600, 600, 400, 624)])
    return together, alone
together, alone = asyncio.run(main())
refused = [[r.status, r.body] for r in together[5:7]]
print(sizes)
print(json.dumps([[json.loads(a) for a in together[:5] + together[7:]], [json.loads(a) for a in alone], refused]))
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    sizes, answers = done.stdout.strip().split("\n")[-2:]
    assert sizes == "[10" + ", 1" * 10 + ", 600, 1000, 624]"  # the ten together, then one each
    together, alone, refused = json.loads(answers)
    # Two requests in the batch whose samples do not fit: each its own 422 at its row.
    assert refused[0] == [422, {"error": "has shape [63]; each sample is 64 numbers", "row": 1}]
    assert refused[1][0] == 422 and refused[1][1]["row"] == 2
    assert "not a finite number" in refused[1][1]["error"]
    # Each request got its own slice of the batch's answers: the same as answering it alone.
    assert [a["predictions"] for a in together] == [a["predictions"] for a in alone]
    assert len({a["predictions"][0] for a in alone}) > 5  # ten different digits
    for batched, single in zip(together, alone):
        (p,), (q,) = batched["probabilities"], single["probabilities"]
        assert p.keys() == q.keys() and all(abs(p[k] - q[k]) < 1e-5 for k in p)


def media_run(tmp_path: Path, name: str, epochs: int = 2) -> Path:
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    config["data"]["path"] = str(CONFIGS / config["data"]["path"])
    config = deep_update(config, {**FAST, "training": {"epochs": epochs}})
    config["training"].pop("early_stopping", None)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_dlcli("train", path, "--runs-dir", tmp_path / "runs", "--quiet")
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def by_file(rows: list[dict], files: list[Path]) -> list[dict]:
    found = {Path(r["file"]).name: r for r in rows}
    return [found[f.name] for f in files]


@pytest.mark.parametrize("name", ["digits_images", "tones_audio", "tickets_text"])
def test_images_audio_and_text_as_files_and_texts_equal_predict(tmp_path, name):
    run = media_run(tmp_path, name)
    folder = CONFIGS / yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["data"]["path"]
    files = sorted(p for p in folder.rglob("*") if p.is_file())[::97][:4]
    given = tmp_path / "given"
    given.mkdir()
    for f in files:
        (given / f.name).write_bytes(f.read_bytes())
    expected = by_file(predicted(run, given), files)
    with Server(run) as server:
        encoded = [base64.b64encode(f.read_bytes()).decode() for f in files]
        status, answer = server.post({"files": encoded})
        assert status == 200, answer
        same_as_predict(answer, expected)
        boundary = "dlcli-test-boundary"
        parts = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{f.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + f.read_bytes()
            + b"\r\n"
            for f in files
        )
        status, answer = server.post(
            parts + f"--{boundary}--\r\n".encode(),
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert status == 200, answer
        same_as_predict(answer, expected)
        if name == "tickets_text":
            status, answer = server.post({"texts": [f.read_text() for f in files]})
            assert status == 200, answer
            same_as_predict(answer, expected)
        # a file that is not of the kind: 422 naming the sample
        status, answer = server.post(
            {"files": [encoded[0], base64.b64encode(b"\xff\x00junk").decode()]}
        )
        assert status == 422 and answer["row"] == 1 and answer["field"] == "files", answer
        status, answer = server.post({"files": ["not base64!"]})
        assert status == 422 and answer["row"] == 0, answer
        assert server.stop()[0] == 0
