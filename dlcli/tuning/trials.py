"""A sweep's trials as processes: each a `dlcli train` child on its share of the cores.

- `override` and `trial_argv`: a trial's values as the `--set`s of its `dlcli train`;
- `Slots`: the `parallel` slots of this machine, the cores of each, and each slot's spare:
  a process that starts Keras and its backend while the trial before it trains, then takes
  the next trial's arguments on stdin (`await_trial`, on the child's side), so the 2–3 s of
  imports every `dlcli train` pays are off the sweep's critical path;
- what a trial's process left behind once it ended: the run folder it named, the JSON line
  it printed, why it failed, the best value of its history.

This module is not the study: asking, pruning and telling Optuna is `dlcli.tuning.sweep`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from dlcli.config.schema import Config
from dlcli.errors import ConfigError
from dlcli.runtime.devices import usable_cores
from dlcli.training import handoff
from dlcli.training.distributed import read_note

CONFIG_FILE = "config.yaml"  # the config every trial trains, with the sweep's --sets applied
LOGS = ".logs"  # each trial's stderr, and the note where it names its run folder
THREAD_POOLS = (
    "OMP_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def override(key: str, value) -> str:
    """A trial's value as a `--set` that reads back as the same value.

    Example:
        >>> override("compile.optimizer.learning_rate", 1e-05)
        'compile.optimizer.learning_rate=1.0e-05'
    """
    if isinstance(value, str):  # quoted: '1e-3' or 'true' stays text (dlcli reads 1e-3 as a number)
        return f"{key}={json.dumps(value)}"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def trial_argv(folder: Path, name: str, number: int, params: dict) -> list[str]:
    """The `dlcli` arguments of trial `number`: a run named `NAME-tNNNN` of the sweep's
    config.yaml, inside the sweep folder, with its values."""
    return [
        "train",
        str(folder / CONFIG_FILE),
        "--runs-dir",
        str(folder),
        "--json",
        "--quiet",
        "--set",
        f"name={name}-t{number:04d}",
        *[part for key, value in params.items() for part in ("--set", override(key, value))],
    ]


@dataclass
class TrialProcess:
    """One trial's child process and what the sweep has seen of it."""

    trial: object  # optuna.trial.Trial
    process: subprocess.Popen
    slot: int
    started: float
    log: Path
    note: Path
    run: Path | None = None
    reported: int = 0  # epochs reported to the pruner
    pruned_at: int | None = None


@dataclass
class Spare:
    """A slot's next trial process, started ahead: Keras imported, waiting for its argv."""

    process: subprocess.Popen
    note: Path
    log: Path


class Slots:
    """The `parallel` slots trials run in: each pinned to its share of the cores (with its
    thread pools sized to match) when several share the machine, each with its spare."""

    def __init__(self, parallel: int, preload: str, env: dict[str, str]):
        self.parallel = parallel
        self.preload = preload  # what a spare starts (`preload_spec`); '' for no spares
        self.env = env  # what the trials start with
        self.cores = usable_cores()
        self.spares: dict[int, Spare] = {}
        self.mlflow_parent: str | None = None  # the MLflow run the trials nest under

    def cores_of(self, slot: int) -> list[int] | None:
        """The cores of `slot` when trials share the machine (None: one trial, every core)."""
        if self.parallel == 1 or not hasattr(os, "sched_setaffinity"):
            return None
        share = len(self.cores) // self.parallel
        return self.cores[slot * share : (slot + 1) * share] or [self.cores[slot % len(self.cores)]]

    def start(self, slot: int, argv: list[str], log: Path) -> tuple[subprocess.Popen, Path]:
        """Run `dlcli ARGV` on `slot`: in the slot's spare when it has a live one, else in a
        new process; (the process, the note where it names its run folder)."""
        spare = self.spares.pop(slot, None)
        if spare is not None:
            handed = self._hand(spare, argv, log)
            if handed is not None:
                return handed, spare.note
        spare = self._spawn(slot, argv, log)
        return spare.process, spare.note

    def add_spare(self, slot: int, log: Path) -> None:
        """Start `slot`'s spare for its next trial (none when the trials may differ in backend)."""
        if self.preload:
            self.spares[slot] = self._spawn(slot, None, log)

    def drop_spares(self) -> None:
        """Spares no trial will need: their stdin closes and they end."""
        for spare in self.spares.values():
            with contextlib.suppress(OSError):
                spare.process.stdin.close()
            try:
                spare.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spare.process.kill()
                spare.process.wait()
            if spare.process.stdout:
                spare.process.stdout.close()
            with contextlib.suppress(OSError):
                spare.log.unlink()
                spare.log.with_suffix(".note").unlink(missing_ok=True)
        self.spares.clear()

    def _spawn(self, slot: int, argv: list[str] | None, log: Path) -> Spare:
        """A `dlcli` process on `slot`'s cores: running `argv`, or (None) a spare that starts
        Keras and its backend, then waits for its argv on stdin (`await_trial`)."""
        note = log.with_suffix(".note")
        note.unlink(missing_ok=True)
        env = dict(self.env)
        part = handoff.Handoff(
            note=str(note),
            parent=os.getpid(),
            preload=self.preload if argv is None else None,
            mlflow_parent=self.mlflow_parent,
        )
        cores = self.cores_of(slot)
        if cores is not None:
            for name in THREAD_POOLS:
                env[name] = str(len(cores))
            env["TF_NUM_INTEROP_THREADS"] = "1"
        with open(log, "wb") as handle:  # a new session: the sweep alone passes Ctrl-C on, once
            process = subprocess.Popen(
                handoff.child_command(part, argv or []),
                env=env,
                stdin=subprocess.DEVNULL if argv else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=handle,
                start_new_session=True,
            )
        if cores is not None:
            with contextlib.suppress(OSError):  # before the child starts its thread pools
                os.sched_setaffinity(process.pid, cores)
        return Spare(process, note, log)

    @staticmethod
    def _hand(spare: Spare, argv: list[str], log: Path) -> subprocess.Popen | None:
        """Give a spare its trial; None when it is gone (a fresh process is started)."""
        process = spare.process
        if process.poll() is not None:
            return None
        try:
            process.stdin.write((json.dumps(argv) + "\n").encode())
            process.stdin.close()
        except OSError:  # it died meanwhile
            with contextlib.suppress(OSError):
                process.kill()
            return None
        with contextlib.suppress(OSError):
            os.replace(spare.log, log)
        return process


def preload_spec(config: Config) -> str:
    """What a spare trial process starts before its trial is known: `BACKEND:DETERMINISTIC`,
    or '' (no spares) when the trials may differ in backend (the space changes `runtime.*`
    or a layer's type, and `auto` may choose differently)."""
    keys = list(config.sweep.space) if config.sweep else []
    if any(
        k.startswith("runtime.")
        or k.endswith(".type")
        or k.startswith("model.layers.")
        and k.count(".") == 2
        for k in keys
    ):
        return ""
    from dlcli.runtime.backend import choose_backend

    try:
        backend, _ = choose_backend(config.runtime, [layer.type for layer in config.model.layers])
    except ConfigError:
        return ""
    return f"{backend}:{int(config.runtime.deterministic)}"


def await_trial() -> None:
    """In a spare trial process (`handoff.current.preload`): start Keras on the sweep's
    backend while the trial before it trains, then take this trial's arguments from stdin
    and run it as `dlcli ARGV`. End quietly when the sweep needs no more trials (stdin closes)."""
    spec = handoff.current.preload or ""
    handoff.current = dataclasses.replace(handoff.current, preload=None)
    backend, _, deterministic = spec.partition(":")
    with contextlib.suppress(ConfigError):  # the trial itself reports what went wrong
        from dlcli.runtime.keras_import import import_keras

        import_keras(backend, deterministic=deterministic == "1")
    line = sys.stdin.readline()
    if not line.strip():
        os._exit(0)
    sys.argv = [sys.argv[0], *json.loads(line)]


def stop_processes(processes: list[subprocess.Popen], signum: int, wait_s: float) -> None:
    """Pass a stop (`signum`) on to each child process and give them `wait_s` seconds in all
    to write their last epoch and end; kill the ones still running then. Signals to this
    process are held meanwhile: a second Ctrl-C does not cut the wait short."""
    from dlcli.training.signals import held

    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
    deadline = time.time() + wait_s
    with held():
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- what an ended trial left ------------------------------------------------------------------


def best_value(rows: list[dict], metric: str, way: str) -> float | None:
    """The best finite value of a history column over the epochs (what the trial scores)."""
    values = [
        r[metric] for r in rows if isinstance(r.get(metric), float) and math.isfinite(r[metric])
    ]
    if not values:
        return None
    return max(values) if way == "max" else min(values)


def noted_run(note: Path) -> Path | None:
    """The run folder a trial named in its note (`dlcli.training.distributed.note`), once it has one."""
    noted = read_note(note).get("run")
    return Path(noted) if noted else None


def printed_result(data: bytes) -> dict:
    """The JSON object a `dlcli train --json` printed last ({} when none)."""
    for line in reversed(data.decode(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                return parsed
    return {}


def failure_reason(log: Path, code: int) -> str:
    """Why a trial's process ended without saying so: its signal, or its last error line."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"its process was killed by {signal.Signals(-code).name} (out of memory?)"
    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        for line in reversed(lines):
            if line.startswith("error:") or "Error" in line:
                return line.removeprefix("error:").strip()
    return f"its process ended with exit code {code}; see {log}"
