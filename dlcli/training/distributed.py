"""Several processes, one run: JAX's distributed runtime, through `keras.distribution`.

Every process of a run is started with the same config and `--coordinator HOST:PORT
--num-processes N --process-id I` (or `DLCLI_COORDINATOR`, `DLCLI_NUM_PROCESSES`,
`DLCLI_PROCESS_ID`). Each runs the whole of `dlcli.training.session.train`, so that every collective
step (a training step, gathering the weights for a checkpoint) happens in the same order
everywhere; process 0 writes the run folder and prints the result, the others write theirs
into a scratch folder that is removed at the end and print their progress on stderr only.

- `Group` is the three options, checked.
- `supervise` runs the process's training in a child (`python -m dlcli.cli.child`, told its
  part by `dlcli.training.handoff`, never by the environment) and watches it. JAX's coordination
  service ends a process whose peer died or stopped answering with SIGABRT and a C++ stack
  on stderr (after `DLCLI_PEER_TIMEOUT` seconds without a heartbeat); the parent turns that
  into one line and marks the run folder failed. Native log lines are kept off the terminal
  unless `--debug`.
- `join` starts the distributed runtime (`keras.distribution.initialize`) with dlcli's
  timeouts, once process 0 has found the coordinator's port free (`port_taken`);
  `check_same_config` then stops every process when their configs differ (a different
  model or step count would otherwise end in a peer that stops answering);
  `handed_folder` gives the followers a copy of the leader's run folder for `--resume`
  (they may run on machines that do not have it).
- `batches` feeds a process its share of a split (`Split.shard`): the same number of samples
  in every process, each global batch made of one per-process batch from each.
- `local_model` is the trained model as an ordinary one-process model, for scoring and
  saving without collectives.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.errors import ConfigError, Problem, RunFailed
from dlcli.runtime import compat
from dlcli.training import handoff

PEER_TIMEOUT = "DLCLI_PEER_TIMEOUT"  # seconds without a peer's heartbeat before giving up
START_TIMEOUT = "DLCLI_START_TIMEOUT"  # seconds to wait for every process to join
DEFAULT_PEER_TIMEOUT, DEFAULT_START_TIMEOUT = 60, 300
EXIT_CODES = (0, 1, 2, 3, 130)  # dlcli's own: the child has said what happened


@dataclass(frozen=True)
class Group:
    """This process's place in a run: `count` processes, this one `index`, met at `coordinator`."""

    coordinator: str = ""
    count: int = 1
    index: int = 0

    @property
    def several(self) -> bool:
        return self.count > 1

    @property
    def leads(self) -> bool:
        """Process 0 writes the run folder and prints the result."""
        return self.index == 0

    @classmethod
    def from_options(cls, coordinator: str | None, count: int | None, index: int | None) -> Group:
        """The options (or their DLCLI_* variables), checked: a ConfigError names the one to fix."""
        if not coordinator and count in (None, 1) and index in (None, 0):
            return cls()
        if count is None or count < 1:
            raise ConfigError(
                Problem(
                    "give the number of processes of the run (2 or more)", where="--num-processes"
                )
            )
        if index is None or not 0 <= index < count:
            shown = "missing" if index is None else str(index)
            raise ConfigError(
                Problem(
                    f"must be 0 to {count - 1} (0 on the coordinator's host), got {shown}",
                    where="--process-id",
                )
            )
        if count == 1:
            return cls()
        host, _, port = (coordinator or "").rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                Problem(
                    f"must be HOST:PORT, the address of process 0 (e.g. 10.0.0.1:29500), got {coordinator or 'nothing'!r}",
                    where="--coordinator",
                )
            )
        return cls(coordinator, count, index)

    def record(self, devices: list[dict]) -> dict:
        """What run.json records: the process count and each process's devices."""
        return {
            "count": self.count,
            "coordinator": self.coordinator,
            "devices": {
                str(i): [d["id"] for d in devices if d.get("process", 0) == i]
                for i in range(self.count)
            },
        }


def timeout(variable: str, default: int) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        seconds = int(text)
        if seconds < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(
            Problem(f"must be a whole number of seconds, got {text!r}", where=variable)
        ) from None
    return seconds


# -- the supervising parent ---------------------------------------------------------------

# Native (absl) log lines: `E1124 17:55:58.598025   14129 file.cc:1520] ...`, Gloo's, and a
# fatal error's stack, which runs to the end of the output.
NATIVE = re.compile(r"^([IWE]\d{4} \d\d:\d\d:\d\d|\[Gloo\]|WARNING: All log messages before absl)")
FATAL = re.compile(r"^(F\d{4} \d\d:\d\d:\d\d|\*\*\* Check failure)")


def supervised(group: Group, argv: list[str], debug: bool = False) -> int | None:
    """The exit code to end with when this process is the parent of a multi-process run's
    worker (`supervise`); None when it trains itself (one process, or the worker)."""
    if not group.several or handoff.current.worker:
        return None
    return supervise(group, argv, debug)


def supervise(group: Group, argv: list[str], debug: bool = False) -> int:
    """Run `dlcli ARGV` as this process's worker and return the exit code to end with."""
    handle, note_path = tempfile.mkstemp(prefix="dlcli-run-", suffix=".txt")
    os.close(handle)
    # The worker trains, and notes how far it got in `note_path`.
    part = handoff.Handoff(note=note_path, worker=True)
    child = subprocess.Popen(
        handoff.child_command(part, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Gloo announces its connections on stdout, which --json keeps to one object.
    relay = threading.Thread(target=_relay, args=(child.stdout, sys.stdout, debug), daemon=True)
    relay.start()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Ctrl-C reaches the child too (one process group): it stops and says so; a SIGTERM
    # sent to this process alone is passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    try:
        _relay(child.stderr, sys.stderr, debug)
        code = child.wait()
        relay.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        noted = read_note(note_path)
        with contextlib.suppress(OSError):
            os.unlink(note_path)
    run = noted.get("run")
    if noted.get("scratch"):  # a follower's copy of the run folder, should it have been killed
        remove_scratch(Path(noted["scratch"]))
    if code in EXIT_CODES or "done" in noted:
        return 0 if "done" in noted else code
    if "joining" in noted and "joined" not in noted:
        reason = (
            f"process {group.index} could not join the run at {group.coordinator} within "
            f"{timeout(START_TIMEOUT, DEFAULT_START_TIMEOUT)} s; start all {group.count} processes "
            f"(--process-id 0 to {group.count - 1}) with the same --coordinator, process 0 on that host"
        )
    else:
        reason = (
            f"process {group.index} of {group.count} was ended by {_how(code)}: a peer process died or stopped "
            f"answering for {timeout(PEER_TIMEOUT, DEFAULT_PEER_TIMEOUT)} s, or this one was killed; "
            "see the other processes' output"
        )
    if run is not None:
        reason += f" (run folder {run} marked failed; continue with: dlcli train --resume {run} and the same options)"
        _mark_failed(run, reason)
    print(f"error: {reason}", file=sys.stderr, flush=True)
    return 1


def _relay(stream, to, debug: bool) -> None:
    """Copy one of the child's streams to ours, less the native runtime's log lines and a
    crash's stack."""
    fatal = False
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        fatal = fatal or bool(FATAL.match(line))
        if debug or not (fatal or NATIVE.match(line)):
            to.write(line)
            to.flush()


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{signal.Signals(-code).name}"
        return f"signal {-code}"
    return (
        "an abort (SIGABRT) from JAX's distributed runtime" if code == 134 else f"exit code {code}"
    )


def read_note(path: str | os.PathLike) -> dict:
    """What the worker noted: `joining`, `joined`, `scratch PATH`, `run PATH`, `done` (as keys)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    return {line.partition(" ")[0]: line.partition(" ")[2] for line in lines if line}


def note(stage: str, detail: str = "") -> None:
    """In a supervised worker, tell the parent how far it got: `joining`, `joined`,
    `scratch PATH` (a follower's scratch folder), `run PATH` (the run folder it writes),
    `done` (the result is out). Elsewhere (`handoff.current.note` unset) nothing."""
    if handoff.current.note is not None:
        with contextlib.suppress(OSError), open(handoff.current.note, "a") as handle:
            handle.write(f"{stage} {detail}".rstrip() + "\n")


def _mark_failed(path: str, reason: str) -> None:
    from dlcli.runs.runfolder import RunFolder, now_iso

    with contextlib.suppress(OSError, ConfigError):
        run = RunFolder(path)
        if run.record.status == "running":
            run.update(status="failed", ended=now_iso(), error=reason)


# -- inside the worker ----------------------------------------------------------------------


def join(group: Group) -> None:
    """Start JAX's distributed runtime for this process (before any JAX computation)."""
    from dlcli.runtime.keras_import import import_keras

    start, heartbeat = (
        timeout(START_TIMEOUT, DEFAULT_START_TIMEOUT),
        timeout(PEER_TIMEOUT, DEFAULT_PEER_TIMEOUT),
    )
    if group.leads and port_taken(int(group.coordinator.rpartition(":")[2])):
        # JAX's coordinator would fail to listen there, and every process wait out its start timeout.
        raise ConfigError(
            Problem(
                "the port is already in use on this host (another program, or an earlier run "
                "still ending); choose a free port",
                where=f"--coordinator {group.coordinator}",
            )
        )
    keras = import_keras("jax")

    note("joining")
    try:
        compat.initialize_jax_distributed(
            lambda: keras.distribution.initialize(
                job_addresses=group.coordinator, num_processes=group.count, process_id=group.index
            ),
            timeout_s=start,
            heartbeat_s=heartbeat,
        )
    except Exception as exc:  # noqa: BLE001 - JAX raises its runtime's own errors
        from dlcli.errors import first_line

        raise RunFailed(
            f"process {group.index} could not join the run at {group.coordinator} within {start} s "
            f"({first_line(exc)}); start all {group.count} processes (--process-id 0 to {group.count - 1}) "
            "with the same --coordinator, process 0 on that host"
        ) from None
    note("joined")


def port_taken(port: int) -> bool:
    """Whether a socket listens on `port` on this host, where JAX's coordinator listens on
    every address (`[::]:PORT`). The probe is closed before JAX binds the port itself."""
    for family, address in ((socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this host
            continue
        with probe:
            # A connection of an earlier run in TIME_WAIT does not keep gRPC's server from
            # the port (it sets SO_REUSEADDR too), a listener does: without SO_REUSEPORT it
            # conflicts with this probe even when the listener set it.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):  # both IPv6 and IPv4, as `[::]` is
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                probe.bind(address)
                probe.listen(1)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
                continue  # this family cannot bind here: try the next
            return False
    return False


# Each part of a config every process must share; `output` is process 0's alone (the
# others write a scratch folder), and `sweep` is no part of what a run trains.
SECTIONS = ("name", "seed", "data", "model", "compile", "training", "runtime")


def fingerprint(config, overrides=()) -> list[int]:
    """One hash per `SECTIONS` entry of what this process trains: of `config` resolved; of
    the `--set` options on a resume (`config` None: every process continues the leader's
    run, so only those can differ). Leaves out what may differ between machines: data
    files' folders, the cache folder; runtime.backend (several processes train on jax)."""
    if config is not None:
        resolved = config.to_dict()
        data = resolved["data"]
        data.pop("cache_dir", None)
        for key in ("path", "test_path"):
            data[key] = data.get(key) and Path(data[key]).name
        resolved["runtime"].pop("backend", None)
        parts = {section: resolved.get(section) for section in SECTIONS}
    else:
        from dlcli.config.text import parse_override

        parts = {section: [] for section in SECTIONS}
        for text in overrides:
            try:
                path, value = parse_override(text)
            except ConfigError:  # the resume itself reports it
                path, value = (str(text).partition(".")[0],), str(text)
            if path and path[0] in parts:
                parts[path[0]].append([list(path), value])
    return [
        zlib.crc32(json.dumps(parts[s], sort_keys=True, default=str).encode()) & 0x7FFFFFFF
        for s in SECTIONS
    ]


def check_same_config(group: Group, config, overrides=()) -> None:
    """After `join`, before any model is built: every process compares its `fingerprint`
    with the others' (a collective step); where they differ every process leaves the
    runtime and raises the same ConfigError, naming the sections that differ. Without this
    check, different models or step counts end in a peer that stops answering."""
    from jax.experimental import multihost_utils

    mine = np.asarray(fingerprint(config, overrides), dtype=np.int32)
    table = np.asarray(multihost_utils.process_allgather(mine)).reshape(group.count, len(SECTIONS))
    differ = [i for i in range(1, group.count) if (table[i] != table[0]).any()]
    if not differ:
        return
    sections = [
        s for j, s in enumerate(SECTIONS) if any(table[i, j] != table[0, j] for i in differ)
    ]
    who = (
        f"process {differ[0]}'s config differs"
        if len(differ) == 1
        else f"the configs of processes {', '.join(map(str, differ[:-1]))} and {differ[-1]} differ"
    )
    finish()  # together: a process that left alone would end the others with an abort
    raise ConfigError(
        f"{who} from process 0's in {_listed(sections)}: start every process with the same "
        "config and --set options"
    )


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def peer_failure(exc: BaseException) -> str | None:
    """The sentence for a collective that failed because a peer went away, else None."""
    text, jax = str(exc), sys.modules.get("jax")
    try:
        several = jax is not None and jax.process_count() > 1
    except Exception:  # noqa: BLE001 - the runtime is not up: one process
        several = False
    if not several:
        return None
    markers = (
        "Gloo",
        "Connection reset by peer",
        "coordination service",
        "DEADLINE_EXCEEDED",
        "Broken pipe",
    )
    if any(m in text for m in markers):
        from dlcli.errors import first_line

        detail = re.sub(r"(Error dispatching computation: )+", "", first_line(exc))
        return f"a peer process died or stopped answering ({detail[:160]})"
    return None


def handed_folder(group: Group, run_path: Path | None, scratch: Path) -> Path:
    """The leader's run folder for `--resume`, as every process sees it: the leader's own
    path; in a follower, a copy unpacked under `scratch` (sent over the runtime)."""
    from jax.experimental import multihost_utils

    payload = b""
    if group.leads:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(
                run_path,
                arcname=run_path.name,
                filter=lambda info: None if info.name.endswith(".lock") else info,
            )
        payload = buffer.getvalue()
    size = int(multihost_utils.broadcast_one_to_all(np.int64(len(payload))))
    data = np.frombuffer(payload, dtype=np.uint8) if group.leads else np.zeros(size, dtype=np.uint8)
    data = np.asarray(multihost_utils.broadcast_one_to_all(data))
    if group.leads:
        return run_path
    with tarfile.open(fileobj=io.BytesIO(data.tobytes()), mode="r") as tar:
        tar.extractall(scratch, filter="data")
        name = tar.getnames()[0].split("/")[0]
    return scratch / name


def scratch_folder() -> Path:
    """Where a follower's run folder goes; removed at the end (`remove_scratch`), by the
    supervising parent should the follower be killed."""
    path = Path(tempfile.mkdtemp(prefix="dlcli-follower-"))
    note("scratch", str(path))
    return path


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Share:
    """This process's part of a multi-process run: its batch, its devices, its samples."""

    process_batch_size: int
    local_devices: int
    samples_per_process: dict  # split -> samples this process trains or validates on

    def record(self) -> dict:
        """What run.json's `runtime` adds for a run of several processes."""
        return {
            "process_batch_size": self.process_batch_size,
            "local_devices": self.local_devices,
            "samples_per_process": self.samples_per_process,
        }


def share_of(config, group: Group, choices, data) -> Share:
    """This process's share of the run: the devices of its kind it holds, the per-process
    batch (a ConfigError when the batch cannot be split evenly), its samples of each split."""
    local = [
        d
        for d in choices.devices
        if d.get("process", 0) == group.index and d["type"] == choices.device_kind
    ]
    samples = {
        name: len(split.shard(group.index, group.count, len(local)))
        for name, split in (("train", data.train), ("val", data.val))
        if split is not None
    }
    return Share(check_batch(config, group, len(local)), len(local), samples)


def check_batch(config, group: Group, local_devices: int) -> int:
    """The per-process batch size: training.batch_size split evenly over every device."""
    batch, devices = config.training.batch_size, group.count * local_devices
    if batch % devices:
        good = max(devices, round(batch / devices) * devices)
        raise ConfigError(
            config.problem(
                ("training", "batch_size"),
                (
                    f"{batch} cannot be split evenly over {group.count} processes x {local_devices} device"
                    f"{'s' if local_devices > 1 else ''}; set a multiple of {devices} (e.g. {good})"
                ),
            )
        )
    return batch // group.count


def batches(split, labels, batch_size: int, shuffle: bool, seed: int, epoch=0, weights=None):
    """A process's share of a split as a Keras pipeline (a PyDataset: every backend takes
    it): a split that streams gives its own; arrays are batched here, shuffled by `seed`
    and the epoch (the same order on a resume). `weights`: targets -> sample weights."""
    given = split.keras_inputs(labels, batch_size, weights)
    if "y" not in given:
        return given["x"]
    arrays = (given["x"], given["y"], given.get("sample_weight"))
    return _array_batches()(*arrays, batch_size, shuffle, seed, epoch)


@functools.cache
def _array_batches():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Arrays (and sample weights, if any) in batches, in a seeded order that changes
        each epoch."""

        def __init__(self, x, y, weights, batch_size, shuffle, seed, epoch):
            super().__init__()
            self.weights = weights
            self.x, self.y, self.batch_size, self.shuffle, self.seed = (
                x,
                y,
                batch_size,
                shuffle,
                seed,
            )
            self.epoch = epoch
            self.order = self._order()

        def _order(self):
            if not self.shuffle:
                return np.arange(len(self.x))
            return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

        def __len__(self):
            return math.ceil(len(self.x) / self.batch_size)

        def __getitem__(self, index):
            rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
            if self.weights is not None:
                return self.x[rows], self.y[rows], self.weights[rows]
            return self.x[rows], self.y[rows]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return ArrayBatches


def local_model(model, rebuild):
    """The trained model as a one-process model: its weights and optimizer state gathered
    (a collective step: every process calls it), then put into `rebuild()`'s fresh copy,
    built with no distribution set."""
    import keras

    weights = model.get_weights()
    optimizer = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    keras.distribution.set_distribution(None)
    copy = rebuild()
    copy.set_weights(weights)
    copy.optimizer.build(copy.trainable_variables)
    for variable, value in zip(copy.optimizer.variables, optimizer):
        variable.assign(value)
    return copy


def finish() -> None:
    """End this process's part in the runtime: waits for the others (a clean shutdown)."""
    import jax

    with contextlib.suppress(Exception):
        jax.distributed.shutdown()


__all__ = [
    "Group",
    "Share",
    "batches",
    "check_batch",
    "check_same_config",
    "handed_folder",
    "join",
    "local_model",
    "share_of",
    "supervise",
    "supervised",
]
