"""Reading runs back: the table of `dlcli runs`, one run for `show`, several for `compare`.

It also holds what the other everyday commands serve: the starter configs of `dlcli init`
(`dlcli/templates/*.yaml`), the config's JSON Schema (`dlcli schema`) and the environment
report (`dlcli env`). It reads run folders and never writes to one. Everything but
`environment()` reads files only and imports neither TensorFlow nor Keras (nor scikit-learn
or matplotlib), so the commands built on it answer at once.

A run's status is what its run.json says, with two corrections a reader needs:
`running` whose process is gone from this host is `killed`, and a folder without a
readable run.json (a crash while it was being created, or a stray folder) is `incomplete`.

Example:
    >>> from dlcli import catalog
    >>> [r["id"] for r in catalog.list_runs("runs", sort="accuracy", limit=3)]
    >>> catalog.compare_runs(["latest", "runs/digits-mlp-20261121-082033"])["differences"]
"""

from __future__ import annotations

import math
import os
import time
from importlib import resources
from pathlib import Path

import yaml

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.runfolder import (
    RunFolder,
    atomic_write,
    effective_status,
    goal,
    process_alive,
    runs_dir_from,
)
from dlcli.runfolder import timestamp as _timestamp

SPLITS = ("test", "val", "train")
# --sort keys that are not metrics, and which way is "first".
RUN_FIELDS = {"started": "newest first", "duration": "shortest first", "name": "a to z"}


# -- one run -------------------------------------------------------------------------------

def summarize(folder: str | os.PathLike) -> dict:
    """One row of `dlcli runs` from a folder's run.json and metrics.json; never raises.

    Returns a dict with id, name, path, status, started, ended, duration_s, epochs (the
    configured total), epochs_run, best_epoch, metrics ({train, val, test}),
    samples_per_s and error. A folder without a readable run.json is `incomplete`.
    """
    run = RunFolder(folder)
    folder = run.path
    record = run.read_json("run.json")
    row = {
        "id": folder.name, "name": None, "path": str(folder), "status": "incomplete",
        "started": None, "ended": None, "duration_s": None, "epochs": None, "epochs_run": None,
        "best_epoch": None, "metrics": {}, "samples_per_s": None, "error": None,
    }
    if not isinstance(record, dict) or not record:
        return row
    metrics = run.read_json("metrics.json")
    metrics = metrics if isinstance(metrics, dict) else {}
    status = effective_status(record)
    duration = record.get("duration_s")
    if status == "running" and duration is None:
        started = _timestamp(record.get("started"))
        duration = round(time.time() - started, 1) if started else None
    epochs_run = metrics.get("epochs_run")
    if epochs_run is None and status != "incomplete":
        epochs_run = _history_rows(folder / "history.csv")  # unfinished: no metrics.json yet
    row.update(
        name=record.get("name"), status=status, started=record.get("started"), ended=record.get("ended"),
        duration_s=duration, epochs=record.get("epochs"), epochs_run=epochs_run,
        best_epoch=metrics.get("best_epoch"),
        metrics={split: metrics[split] for split in ("train", "val", "test") if isinstance(metrics.get(split), dict)},
        samples_per_s=metrics.get("samples_per_s"), error=record.get("error"),
    )
    if status != record.get("status"):
        row["recorded_status"] = record.get("status")
    return row


def metric_value(row: dict, spec: str):
    """A run's value for `test.accuracy`, `val_loss` or `accuracy` (test), or None."""
    split, name = parse_metric(spec)
    value = row.get("metrics", {}).get(split, {}).get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def parse_metric(spec: str) -> tuple[str, str]:
    """'accuracy' -> ('test', 'accuracy'); 'val.loss' and 'val_loss' -> ('val', 'loss')."""
    spec = spec.strip()
    for split in SPLITS:
        for sep in (".", "_"):
            prefix = split + sep
            if spec.startswith(prefix) and len(spec) > len(prefix):
                return split, spec[len(prefix):]
    return "test", spec


# -- many runs -----------------------------------------------------------------------------

def find_runs(runs_dir=None, sort: str | None = None) -> list[dict]:
    """Every run folder in the runs dir, summarized and sorted (default: newest first).

    Args:
        runs_dir: the runs dir (default `runs`, or $DLCLI_RUNS_DIR).
        sort: a metric (`accuracy`, `test.accuracy`, `val_loss`; split default `test`),
            best first: higher first for accuracy/auc/precision/recall/f1, lower first
            for loss and errors; or `started`, `duration`, `name`. Runs without the
            value come last.
    """
    runs = runs_dir_from(runs_dir)
    try:
        folders = [Path(e.path) for e in os.scandir(runs) if not e.name.startswith(".") and e.is_dir()]
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ConfigError(Problem("is a file, not a runs dir; choose another with --runs-dir", where=str(runs))) from None
    except OSError as exc:
        raise ConfigError(Problem(f"cannot read the runs dir: {exc.strerror or exc}", where=str(runs))) from None
    rows = [summarize(folder) for folder in folders]
    started = {row["path"]: _timestamp(row["started"]) or _mtime(row["path"]) for row in rows}
    rows.sort(key=lambda r: (started[r["path"]], r["id"]), reverse=True)
    if not sort or sort == "started":
        return rows
    if sort == "duration":
        return sorted(rows, key=lambda r: (r["duration_s"] is None, r["duration_s"] or 0))
    if sort == "name":
        return sorted(rows, key=lambda r: (r["name"] is None, r["name"] or r["id"]))
    values = {row["path"]: metric_value(row, sort) for row in rows}
    if rows and all(v is None for v in values.values()):
        known = sorted({f"{s}.{m}" for row in rows for s, ms in row["metrics"].items() for m in ms})
        choices = known + list(RUN_FIELDS)
        raise ConfigError(Problem(
            f"no run in {runs} has the metric '{sort}'{did_you_mean(sort, choices)}; "
            f"sort by one of: {', '.join(choices)}",
            where="--sort",
        ))
    sign = -1.0 if goal(parse_metric(sort)[1]) == "max" else 1.0
    return sorted(rows, key=lambda r: (values[r["path"]] is None, sign * (values[r["path"]] or 0.0)))


def list_runs(runs_dir=None, sort: str | None = None, limit: int | None = None) -> list[dict]:
    """The first `limit` runs of `find_runs(runs_dir, sort)`: what `dlcli runs` shows."""
    rows = find_runs(runs_dir, sort)
    return rows if limit is None else rows[:limit]


def run_details(ref=None, runs_dir=None) -> dict:
    """Everything `dlcli show` prints about one run (a path, an id or `latest`).

    Returns `summarize`'s fields plus record (run.json), config (config.yaml as data),
    config_text, history (history.csv rows) and evaluations (evaluations.jsonl entries).
    """
    run = RunFolder.find(ref, runs_dir)
    details = summarize(run.path)
    text = _read_text(run.file("config.yaml"))
    try:
        history = run.history()
    except (ValueError, KeyError, TypeError):
        history = []  # a damaged history.csv: show the rest
    record = run.record
    details.update(
        record=record if isinstance(record, dict) else {}, config=_parse_yaml(text), config_text=text, history=history,
        evaluations=run.evaluations(),
    )
    return details


def compare_runs(refs, runs_dir=None) -> dict:
    """Runs side by side: the config keys that differ, and their metrics with the best marked.

    Returns {"runs": [summary, ...], "differences": [{"key", "values"}],
    "metrics": [{"metric", "goal", "values", "best"}]}: each `values` list follows the
    order of `runs`; `best` holds the indices of the best value (empty when all are equal).
    """
    from dlcli.config import config_differences

    refs = list(refs)
    if len(refs) < 2:
        raise ConfigError(Problem(f"compare needs at least two runs, got {len(refs)}; `dlcli runs` lists them"))
    folders = [RunFolder.find(ref, runs_dir) for ref in refs]
    rows = [summarize(folder.path) for folder in folders]
    configs = [_parse_yaml(_read_text(folder.file("config.yaml"))) or {} for folder in folders]
    keys: dict[str, None] = {}
    for other in configs[1:]:
        keys.update(dict.fromkeys(config_differences(configs[0], other)))
    differences = [
        {"key": key, "values": [_lookup(config, key) for config in configs]}
        for key in sorted(keys, key=_path_order)
    ]
    metrics = []
    for split in SPLITS:
        names = list(dict.fromkeys(name for row in rows for name in row["metrics"].get(split, {})))
        for name in names:
            spec = f"{split}.{name}"
            values = [metric_value(row, spec) for row in rows]
            metrics.append({"metric": spec, "goal": goal(name), "values": values, "best": _best(values, goal(name))})
    return {"runs": rows, "differences": differences, "metrics": metrics}


# -- starter configs (`dlcli init`) --------------------------------------------------------

def _templates_dir():
    return resources.files("dlcli") / "templates"


def templates() -> dict[str, str]:
    """Template name -> its one-line description (the first comment line of the file)."""
    out = {}
    for entry in sorted(_templates_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            first = next((line for line in entry.read_text(encoding="utf-8").splitlines() if line.strip()), "")
            out[entry.name[: -len(".yaml")]] = first.lstrip("#").strip()
    return out


def template_text(name: str) -> str:
    """The commented YAML of a template; a ConfigError naming the templates if unknown."""
    names = templates()
    if name not in names:
        raise ConfigError(Problem(
            f"no template '{name}'{did_you_mean(name, names)}; choose one of: {', '.join(names)}",
            where="--template",
        ))
    return (_templates_dir() / f"{name}.yaml").read_text(encoding="utf-8")


def write_template(path: str | os.PathLike = "config.yaml", name: str = "mlp", force: bool = False) -> Path:
    """Write template `name` to `path` (a folder gets `config.yaml` inside); return the file.

    Refuses (ConfigError, exit 2) to overwrite an existing file unless `force`.
    """
    text = template_text(name)
    target = Path(path)
    if target.is_dir() or str(path).endswith(("/", os.sep)):
        target = target / "config.yaml"
    if target.exists() and not force:
        raise ConfigError(Problem("already exists; pass --force to overwrite it, or choose another PATH", where=str(target)))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot write it: {exc.strerror or exc}", where=str(target))) from None
    return target


# -- the config's JSON Schema (`dlcli schema`) ---------------------------------------------

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict:
    """The JSON Schema of a dlcli config, from `dlcli.config.Config`, for editors and CI."""
    from dlcli.config import Config

    generated = Config.model_json_schema()
    keras_object = generated.get("$defs", {}).get("KerasObject")
    if keras_object is not None:
        # The config accepts a bare name wherever it takes a Keras object (`optimizer: adam`).
        generated["$defs"]["KerasObject"] = {
            "description": keras_object.pop("description", ""),
            "anyOf": [{"type": "string", "description": "a Keras class or alias, case-insensitive"}, keras_object],
        }
    return {"$schema": SCHEMA_DIALECT, "title": "dlcli config", **{k: v for k, v in generated.items() if k != "title"}}


# -- the environment (`dlcli env`): the one part here that imports Keras --------------------

BACKENDS = ("tensorflow", "jax", "torch")


def environment() -> dict:
    """Versions, the Keras backend, the devices it sees and the precision each supports.

    The backend is $KERAS_BACKEND, else tensorflow. Mixed precision: float16 from GPU
    compute capability 7.0, bfloat16 from 8.0; on CPU only float32 pays off.
    """
    from dlcli.config import RuntimeConfig
    from dlcli.runtime import (
        MIN_CAPABILITY_BFLOAT16,
        MIN_CAPABILITY_FLOAT16,
        choose_runtime,
        import_keras,
        list_devices,
        versions,
    )

    backend = os.environ.get("KERAS_BACKEND") or "tensorflow"
    source = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else "default"
    if backend not in BACKENDS:
        raise ConfigError(Problem(f"dlcli runs on {', '.join(BACKENDS)}, got '{backend}'", where="KERAS_BACKEND"))
    import_keras(backend, where="KERAS_BACKEND" if source != "default" else "")
    devices = list_devices(backend)
    _add_gpu_memory(devices)
    gpus = [d for d in devices if d["type"] == "GPU"]
    for gpu in gpus:
        capability = tuple(gpu.get("compute_capability") or (0, 0))
        gpu["float16"] = capability >= MIN_CAPABILITY_FLOAT16
        gpu["bfloat16"] = capability >= MIN_CAPABILITY_BFLOAT16
    auto = choose_runtime(RuntimeConfig(backend=backend), devices, 1)["precision"]
    if not gpus:
        note = "no GPU: mixed precision is not supported here; runs use float32"
    else:
        note = f"precision: auto picks {auto} on these GPUs"
    return {
        **versions(backend), "backend_from": source,
        "cpu_count": os.cpu_count(), "devices": devices,
        "precision": {
            "auto": auto,
            "mixed_float16": bool(gpus) and all(g["float16"] for g in gpus),
            "mixed_bfloat16": bool(gpus) and all(g["bfloat16"] for g in gpus),
            "note": note,
        },
    }


def _add_gpu_memory(devices: list[dict]) -> None:
    """Fill in GPU memory from nvidia-smi where the backend did not report it."""
    gpus = [d for d in devices if d["type"] == "GPU"]
    if not gpus or all("memory_gb" in g for g in gpus):
        return
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return
    try:
        out = subprocess.run([exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             check=False, capture_output=True, text=True, timeout=10).stdout
        sizes = [round(float(line) / 1024, 1) for line in out.split()]
    except (OSError, ValueError, subprocess.SubprocessError):
        return
    if len(sizes) == len(gpus):
        for gpu, size in zip(gpus, sizes):
            gpu.setdefault("memory_gb", size)


# -- helpers -------------------------------------------------------------------------------

def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _parse_yaml(text: str | None):
    if text is None:
        return None
    try:
        from dlcli.config import safe_load

        data = safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _history_rows(path: Path) -> int | None:
    try:
        with open(path, "rb") as handle:
            lines = sum(1 for line in handle if line.strip())
    except OSError:
        return None
    return max(lines - 1, 0)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _lookup(data, dotted: str):
    """The value at 'model.layers.0.units' (list items by index), or None if absent."""
    node = data
    for part in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _path_order(dotted: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in dotted.split(".")]


def _best(values: list, direction: str) -> list[int]:
    present = [v for v in values if v is not None]
    if len(set(present)) < 2:
        return []
    best = max(present) if direction == "max" else min(present)
    return [i for i, v in enumerate(values) if v == best]


__all__ = [
    "compare_runs", "config_schema", "effective_status", "environment", "find_runs", "goal",
    "list_runs", "metric_value", "parse_metric", "process_alive", "run_details", "summarize",
    "template_text", "templates", "write_template",
]
