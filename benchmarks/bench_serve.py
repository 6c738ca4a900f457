"""`dlcli serve` against the service users write by hand and against the HTTP floor.

Trains the digits MLP (a few epochs) into a temporary runs dir and exports its ONNX copy,
then loads three services in turn, each in a process of its own on 127.0.0.1, with the
same batch-1 request (one digit's 64 pixels):

- `dlcli serve RUN` (the ONNX copy on onnxruntime);
- the hand-written service: FastAPI calling `model.predict` per request on the run's
  model.keras (`HAND_WRITTEN` below, as tutorials write it; an `async` route, since
  concurrent `model.predict` calls from FastAPI's thread pool fail with errors);
- the HTTP floor: dlcli's own server stack (uvicorn, httptools, uvloop, dlcli's front with
  its limits, API-key check and metrics) reading the body and answering a constant, so the
  ratio says what the model and its JSON cost on top of HTTP;
- for reference, a plain FastAPI route answering a constant.

A load generator in another process keeps 1, then 32, clients each sending its next
request as soon as the last is answered (HTTP/1.1 keep-alive), for `--seconds` each, and
reports requests/s and the p50/p99 latency. All services are up at once and measured in
`--repeats` rounds, in an order that turns each round, so a noisy spell of a shared
machine falls on each of them; the figures are medians over the rounds. Before the load,
each service is started `--starts` times alone and timed from launch to its first answer
of `GET /healthz` (the start time a user waits for, imports included). `--soak SECONDS`
then holds 32 clients on `dlcli serve` and samples its resident memory every 10 s.

    python benchmarks/bench_serve.py                  # 3 rounds of 20 s per service and load
    python benchmarks/bench_serve.py --soak 600       # and a 10-minute soak
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIXELS = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip
BODY = json.dumps({"inputs": [[float(p) for p in PIXELS]]}).encode()

HAND_WRITTEN = """
import sys
import keras
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

model = keras.saving.load_model(sys.argv[1])
labels = list(range(10))
app = FastAPI()


class Request(BaseModel):
    inputs: list[list[float]]


@app.post("/predict")
async def predict(request: Request):  # one call at a time: Keras's predict is not thread-safe
    probabilities = model.predict(np.array(request.inputs, dtype="float32"), verbose=0)
    return {
        "predictions": [labels[i] for i in probabilities.argmax(axis=1)],
        "probabilities": [{str(k): float(p) for k, p in zip(labels, row)} for row in probabilities],
    }


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""

FASTAPI_CONSTANT = """
import sys
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
ANSWER = b'{"predictions": [0]}'


@app.post("/predict")
async def predict(request: Request):
    await request.body()
    return Response(ANSWER, media_type="application/json")


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def floor_server(run: str, port: int) -> None:
    """dlcli's server stack answering a constant: the front reads the body, checks the key
    and counts the request as for /predict, then answers without the model or JSON."""
    from dlcli.serve.app import Front
    from dlcli.serve.served import load_served
    from dlcli.serve.server import bind, serve_front

    class Constant(Front):
        async def parse(self, scope, body):
            return None

        async def answer(self, payload):
            return b'{"predictions": [0]}'

    serve_front(Constant(load_served(run)), bind("127.0.0.1", port))


# ---------------------------------------------------------------------------- load


async def _client(port: int, stop: float, latencies: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )
    while time.perf_counter() < stop:
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"the service answered {head.splitlines()[0]!r}")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
    writer.close()


def load(port: int, clients: int, seconds: float) -> dict:
    """Requests/s and latency percentiles (ms) of `clients` closed-loop clients."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def run():
        await asyncio.gather(*[_client(port, stop, latencies) for _ in range(clients)])

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    latencies.sort()

    def at(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "requests": len(latencies),
    }


def measure(port: int, clients: int, seconds: float) -> dict:
    """`load` in a process of its own (the load generator never shares the server's GIL)."""
    done = subprocess.run(
        [sys.executable, __file__, "--load", str(port), str(clients), str(seconds)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"the load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


# ---------------------------------------------------------------------------- services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, env=None) -> subprocess.Popen:
    """Launch a service and return once it answers `GET /healthz` (polled every 5 ms)."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )
    deadline = time.time() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return process
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                raise SystemExit(
                    f"{command} did not start: {process.stderr.read().decode()[-2000:]}"
                )
            time.sleep(0.005)


def start_times(command, env, starts: int) -> dict:
    """Seconds from launch to the first answer of `GET /healthz`, over `starts` launches."""
    times = []
    for _ in range(starts):
        port = free_port()
        began = time.perf_counter()
        process = start(command(port), port, env)
        times.append(time.perf_counter() - began)
        stop(process)
    return {
        "median": round(statistics.median(times), 3),
        "range": [round(min(times), 3), round(max(times), 3)],
    }


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def dlcli(*args) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dlcli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"dlcli {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per service and load")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3, help="rounds, in turning order")
    parser.add_argument("--starts", type=int, default=5, help="timed launches per service")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of 32 clients on dlcli")
    parser.add_argument("--run", help="a run with an ONNX copy (default: train and export one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-serve-") as tmp:
        run = args.run
        if run is None:
            run = dlcli(
                "train", ROOT / "configs" / "digits_mlp.yaml", "--runs-dir", Path(tmp) / "runs",
                "--set", "training.epochs=5", "--quiet",
            ).strip().splitlines()[-1]  # fmt: skip
            dlcli("export", run, "--format", "onnx")
        backend = json.loads((Path(run) / "run.json").read_text()).get("backend") or "jax"
        scripts = Path(tmp)
        (scripts / "hand_written.py").write_text(textwrap.dedent(HAND_WRITTEN))
        (scripts / "fastapi_constant.py").write_text(textwrap.dedent(FASTAPI_CONSTANT))
        services = {
            "dlcli serve (ONNX copy)": lambda p: [sys.executable, "-m", "dlcli", "serve", run, "--port", str(p)],
            "hand-written FastAPI + model.predict": lambda p: [
                sys.executable, str(scripts / "hand_written.py"), str(Path(run) / "model.keras"), str(p)
            ],
            "HTTP floor: dlcli's stack, constant answer": lambda p: [
                sys.executable, __file__, "--floor", run, str(p)
            ],
            "reference: FastAPI route, constant answer": lambda p: [
                sys.executable, str(scripts / "fastapi_constant.py"), str(p)
            ],
        }  # fmt: skip
        env = {"KERAS_BACKEND": backend}
        start_s = {
            name: start_times(command, env, args.starts) for name, command in services.items()
        }
        processes, ports = {}, {}
        try:
            for name, command in services.items():  # all up at once; each idle while not measured
                ports[name] = free_port()
                processes[name] = start(command(ports[name]), ports[name], env)
                measure(ports[name], 4, 2.0)  # warm-up
            rounds: dict[str, dict] = {
                name: {str(c): [] for c in args.clients} for name in services
            }
            names = list(services)
            for round_ in range(args.repeats):  # the order turns each round: a noisy spell hits all
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    for c in args.clients:
                        rounds[name][str(c)].append(measure(ports[name], c, args.seconds))
                print(f"round {round_ + 1}/{args.repeats} done", flush=True)
            results = {
                name: {
                    **{c: summary(runs) for c, runs in by_clients.items()},
                    "rss_mib": round(rss_mib(processes[name].pid), 1),
                }
                for name, by_clients in rounds.items()
            }
            results["ratios"] = ratios(rounds, names, args.clients)
            results["start_s"] = start_s
        finally:
            for process in processes.values():
                stop(process)
        if args.soak:
            port = free_port()
            process = start(services["dlcli serve (ONNX copy)"](port), port)
            memory, started = [], time.time()
            load_process = subprocess.Popen(
                [sys.executable, __file__, "--load", str(port), "32", str(args.soak)],
                stdout=subprocess.PIPE,
                text=True,
            )
            while load_process.poll() is None:
                memory.append(round(rss_mib(process.pid), 1))
                time.sleep(10)
            soak = json.loads(load_process.stdout.read())
            soak.update(
                seconds=round(time.time() - started),
                rss_mib_first_minute=max(memory[:6]),
                rss_mib_last_minute=max(memory[-6:]),
                rss_mib_samples=memory,
            )
            stop(process)
            results["soak"] = soak
    report(results, args.clients)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def summary(runs: list[dict]) -> dict:
    """The median of each figure over the rounds, and the range of requests/s."""
    rates = [r["requests_per_s"] for r in runs]
    return {
        "requests_per_s": statistics.median(rates),
        "requests_per_s_range": [min(rates), max(rates)],
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
    }


def ratios(rounds: dict, names: list[str], clients: list[int]) -> dict:
    """Per client count, dlcli's requests/s over the hand-written service's and over the
    floor's, round by round (median and range)."""
    ours, hand, floor = names[:3]
    out = {}
    for c in map(str, clients):
        for other, key in ((hand, "hand_written"), (floor, "floor")):
            pairs = [
                a["requests_per_s"] / b["requests_per_s"]
                for a, b in zip(rounds[ours][c], rounds[other][c])
            ]
            out[f"{c}_clients_over_{key}"] = {
                "median": round(statistics.median(pairs), 3),
                "range": [round(min(pairs), 3), round(max(pairs), 3)],
            }
    return out


def report(results: dict, clients: list[int]) -> None:
    services = [n for n in results if n not in ("soak", "ratios", "start_s")]
    print()
    head = " ".join(f"{f'{c} client(s): req/s (range)  p50  p99 ms':>44}" for c in clients)
    print(f"{'service':44} {head}")
    for name in services:
        cells = []
        for c in map(str, clients):
            r = results[name][c]
            low, high = r["requests_per_s_range"]
            cells.append(
                f"{r['requests_per_s']:>11,.0f} ({low:,.0f}-{high:,.0f}) {r['p50_ms']:>6} {r['p99_ms']:>6}"
            )
        print(f"{name:44} " + " ".join(f"{cell:>44}" for cell in cells))
    for key, value in results["ratios"].items():
        print(f"{key}: {value['median']}x (range {value['range'][0]}-{value['range'][1]})")
    for name, value in results["start_s"].items():
        print(
            f"start to first /healthz, {name}: {value['median']} s (range {value['range'][0]}-{value['range'][1]})"
        )
    if "soak" in results:
        soak = results["soak"]
        print(
            f"soak: {soak['seconds']} s at 32 clients, {soak['requests_per_s']:,.0f} req/s, p99 {soak['p99_ms']} ms; "
            f"resident memory {soak['rss_mib_first_minute']} MiB in the first minute, "
            f"{soak['rss_mib_last_minute']} MiB in the last"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        print(json.dumps(load(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))))
    elif sys.argv[1:2] == ["--floor"]:
        floor_server(sys.argv[2], int(sys.argv[3]))
    else:
        main()
