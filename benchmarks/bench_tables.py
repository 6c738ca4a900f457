"""How fast, and in how much memory, dlcli reads a large CSV table, against the readers a
user would otherwise reach for.

A CSV of ROWS x 64 columns (63 float features written with about 6 significant digits, then
an integer label column 'label'; a header row) is generated into a temporary folder, with a
fixed seed. Each reader then reads it in a fresh process, --repeats times, so that the peak
RSS of one reader is its own:

    dlcli     dlcli.data.tables: TableFile.open + whole.read_table (the 63 features, target 'label')
    pyarrow   pyarrow.csv.read_csv(path), defaults
    pandas    pandas.read_csv(path), defaults
    loadtxt   numpy.loadtxt(path, delimiter=",", skiprows=1, dtype=float32)

Inside the child, after its imports, the read itself is timed, and the peak RSS of the
process (Linux's VmHWM, which is getrusage's ru_maxrss without what exec inherits; ru_maxrss
elsewhere) is taken right after it; the figure shown is that peak minus the RSS right after
the imports (what the read added at its worst). `array bytes` is the size of what training
needs, the same for every reader: x as float32 (rows x 63) plus y (rows x 8 bytes), that is
rows x 260 bytes.

The gates (exit status 1 when one fails), per size:
    time    dlcli / pyarrow.csv.read_csv <= 1.5, the median of the per-repeat ratios
            (each repeat runs pyarrow, then dlcli, then the others)
    memory  dlcli's peak over its baseline <= 2 x array bytes (median over the repeats)

    python benchmarks/bench_tables.py                           # 200,000 and 1,000,000 rows, 3 repeats
    python benchmarks/bench_tables.py --sizes 200000 --repeats 5
    python benchmarks/bench_tables.py --no-loadtxt-1m --json tables.json
    python benchmarks/bench_tables.py --write 1000000 big.csv   # only write the CSV

The parent process also measures how much CPU the rest of the machine used during each
child (Linux /proc/stat, as bench_train.py does) and prints it as `other cpu-s`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_train import busy_cpu_seconds, children_cpu_seconds  # the same noise measure

HERE = Path(__file__).resolve().parent
FEATURES = 63
READERS = ("pyarrow", "dlcli", "pandas", "loadtxt")  # the order within a repeat
MAX_TIME_RATIO = 1.5  # dlcli / pyarrow.csv.read_csv
MAX_MEMORY_RATIO = 2.0  # dlcli's peak over baseline / array bytes
LOADTXT_SLOW = 1_000_000  # --no-loadtxt-1m skips numpy.loadtxt from this many rows on


def array_bytes(rows: int) -> int:
    """x as float32 (rows x 63) and y as int64: what training needs in memory."""
    return rows * (FEATURES * 4 + 8)


# ---------------------------------------------------------------- the data


def write_csv(path: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> Path:
    """ROWS x 64 numbers with a header: f0..f62 (about 6 significant digits, each column its
    own scale, some negative) and 'label' (0..9). The same bytes for the same rows and seed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    decimals = rng.integers(0, 7, size=FEATURES)  # 123456 -> 123456, 12345.6, ... 0.123456
    spread = rng.uniform(0.05, 0.35, size=FEATURES)  # share of 999,999 one standard deviation takes
    names = [f"f{j}" for j in range(FEATURES)] + ["label"]
    with open(path, "wb") as handle:
        handle.write((",".join(names) + "\n").encode())
        options = pcsv.WriteOptions(include_header=False, quoting_style="none")
        with pcsv.CSVWriter(
            handle,
            pa.schema([(n, pa.float64()) for n in names[:-1]] + [("label", pa.int64())]),
            write_options=options,
        ) as writer:
            for start in range(0, rows, chunk):
                n = min(chunk, rows - start)
                label = rng.integers(0, 10, size=n)
                mantissa = np.clip(
                    np.rint(
                        rng.normal(size=(n, FEATURES)) * spread * 999_999 + label[:, None] * 20_000
                    ),
                    -999_999,
                    999_999,
                )
                values = mantissa / 10.0**decimals  # written as the shortest text: <= 6 digits
                columns = [pa.array(values[:, j]) for j in range(FEATURES)] + [pa.array(label)]
                writer.write_table(pa.Table.from_arrays(columns, names=names))
    return path


# ---------------------------------------------------------------- one read, in a child process


def _status(field: str) -> int | None:
    """A size from /proc/self/status (Linux), bytes; None elsewhere."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def ru_maxrss() -> int:
    """getrusage's peak RSS, bytes (kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_now() -> int:
    """Resident set size of this process now, bytes (the peak so far where /proc is missing)."""
    return _status("VmRSS") or ru_maxrss()


def peak_rss() -> int:
    """Peak RSS of this process, bytes. VmHWM where Linux has it: ru_maxrss keeps, across
    fork and exec, the high-water mark of the parent's memory at the fork (a parent that has
    just written a 500 MB CSV would lend the child its peak), while VmHWM starts afresh at
    exec. Elsewhere ru_maxrss (the parent writes the data in a child of its own, so it stays
    small)."""
    return _status("VmHWM") or ru_maxrss()


def child(reader: str, path: str) -> dict:
    """Import the reader, then time one read of `path`; figures as a dict (one JSON line)."""
    if reader == "dlcli":
        import pyarrow  # read_table imports these lazily: they belong to the baseline
        import pyarrow.compute
        import pyarrow.csv

        from dlcli.data.tables.tablefile import TableFile
        from dlcli.data.tables.whole import read_table

        def read():
            file = TableFile.open(
                path, header="auto", columns=None, delimiter="auto", missing=["", "?", "NA"]
            )
            features = [name for name in file.format.names if name != "label"]
            table = read_table(file, features, "label", {}, "fill")
            return table, table.x.nbytes + table.y.nbytes, table.x.shape, str(table.y.dtype)
    elif reader == "pyarrow":
        import pyarrow.csv

        def read():
            table = pyarrow.csv.read_csv(path)
            return (
                table,
                table.nbytes,
                (table.num_rows, table.num_columns),
                str(table.schema.types[-1]),
            )
    elif reader == "pandas":
        import pandas

        def read():
            frame = pandas.read_csv(path)
            return (
                frame,
                int(frame.memory_usage(index=True).sum()),
                frame.shape,
                str(frame.dtypes.iloc[-1]),
            )
    elif reader == "loadtxt":
        import numpy

        def read():
            x = numpy.loadtxt(path, delimiter=",", skiprows=1, dtype=numpy.float32)
            return x, x.nbytes, x.shape, str(x.dtype)
    else:
        raise SystemExit(f"unknown reader {reader!r}")
    had_pandas = "pandas" in sys.modules
    base = rss_now()
    started = time.perf_counter()
    result, out_bytes, shape, dtype = read()
    seconds = time.perf_counter() - started
    peak = peak_rss()
    del result
    # pyarrow's Array.to_numpy imports pandas where it is installed (about 0.2 s and 40 MB):
    # a reader built on it pays that inside the read.
    return {
        "reader": reader,
        "seconds": seconds,
        "rss_base": base,
        "rss_peak": peak,
        "ru_maxrss": ru_maxrss(),
        "out_bytes": int(out_bytes),
        "shape": list(shape),
        "y_dtype": dtype,
        "read_imported_pandas": "pandas" in sys.modules and not had_pandas,
    }


# ---------------------------------------------------------------- the parent


def run_child(reader: str, path: Path) -> dict:
    busy, cpu, started = busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", reader, str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"the {reader} reader failed (exit {proc.returncode}) on {path}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["cpu_s"], out["process_s"] = cpu, wall
    out["other_cpu_s"] = None if busy is None else max(0.0, busy_cpu_seconds() - busy - cpu)
    return out


def noisy_run(out: dict, share: float = 0.05) -> bool:
    """Other processes used more than `share` of the child's wall time (start to exit) in CPU."""
    return (out["other_cpu_s"] or 0) > share * out["process_s"]


def warm(path: Path) -> None:
    """Read the file once so that every reader finds it in the OS file cache."""
    with open(path, "rb") as handle:
        while handle.read(16 << 20):
            pass


def bench_size(path: Path, rows: int, readers: list[str], repeats: int) -> dict:
    results = {reader: [] for reader in readers}
    for repeat in range(1, repeats + 1):
        line = []
        for reader in readers:
            out = run_child(reader, path)
            if out["shape"][0] != rows:
                raise SystemExit(f"{reader} read {out['shape'][0]} rows of {rows}")
            results[reader].append(out)
            other = f" (other {out['other_cpu_s']:.1f} cpu-s)" if noisy_run(out) else ""
            pandas = " (imported pandas)" if out["read_imported_pandas"] else ""
            line.append(
                f"{reader} {out['seconds']:.2f} s {(out['rss_peak'] - out['rss_base']) / 1e6:.0f} MB"
                f"{pandas}{other}"
            )
        print(f"  {rows:,} rows, repeat {repeat}/{repeats}: " + ", ".join(line), flush=True)
    summary = {}
    for reader, runs in results.items():
        ratios = [r["seconds"] / p["seconds"] for r, p in zip(runs, results["pyarrow"])]
        over = [r["rss_peak"] - r["rss_base"] for r in runs]
        summary[reader] = {
            "median_s": statistics.median(r["seconds"] for r in runs),
            "ratio_to_pyarrow": statistics.median(ratios),
            "ratios": ratios,
            "peak_over_base_bytes": statistics.median(over),
            "peak_over_base_max_bytes": max(over),
            "out_bytes": runs[0]["out_bytes"],
            "shape": runs[0]["shape"],
            "y_dtype": runs[0]["y_dtype"],
            "rss_base_bytes": statistics.median(r["rss_base"] for r in runs),
            "max_other_cpu_s": max((r["other_cpu_s"] or 0) for r in runs),
            "runs": runs,
        }
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sizes",
        default="200000,1000000",
        help="rows of each generated CSV (default 200000,1000000)",
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="fresh processes per reader and size (default 3)"
    )
    p.add_argument(
        "--no-loadtxt-1m",
        action="store_true",
        help=f"skip numpy.loadtxt for sizes of {LOADTXT_SLOW:,} rows and more (it is slow)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data (default 0)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    p.add_argument(
        "--write",
        nargs=2,
        metavar=("ROWS", "PATH"),
        help="only write the generated CSV of ROWS rows to PATH (with --seed)",
    )
    args = p.parse_args()

    if args.write:
        write_csv(Path(args.write[1]), int(args.write[0]), args.seed)
        return 0

    if args.child:
        print(json.dumps(child(*args.child)))
        return 0

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    from bench_train import dlcli_state  # the benchmarks folder is this script's

    print(
        f"{dlcli_state()}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.repeats} fresh processes per reader"
        f" and size; readers in the order {', '.join(READERS)}",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-tables-") as tmp:
        for rows in sizes:
            path = Path(tmp) / f"table-{rows}.csv"
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--write",
                    str(rows),
                    str(path),
                    "--seed",
                    str(args.seed),
                ],
                check=True,
            )  # keeps this process small
            print(
                f"wrote {rows:,} x {FEATURES + 1} ({path.stat().st_size / 1e6:.0f} MB) in"
                f" {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            warm(path)
            readers = [
                r
                for r in READERS
                if not (r == "loadtxt" and args.no_loadtxt_1m and rows >= LOADTXT_SLOW)
            ]
            results[rows] = {
                "file_bytes": path.stat().st_size,
                "array_bytes": array_bytes(rows),
                "readers": bench_size(path, rows, readers, args.repeats),
            }
            path.unlink()

    print()
    header = (
        f"{'reader':<8} {'rows':>9} {'median s':>9} {'ratio':>6} {'peak MB':>8} {'peak/array':>10}"
        f" {'output MB':>9} {'other cpu-s':>11}"
    )
    print(header)
    print("-" * len(header))
    failed = []
    noisy = False
    for rows, result in results.items():
        array = result["array_bytes"]
        for reader, r in result["readers"].items():
            print(
                f"{reader:<8} {rows:>9,} {r['median_s']:>9.3f} {r['ratio_to_pyarrow']:>6.2f}"
                f" {r['peak_over_base_bytes'] / 1e6:>8.0f} {r['peak_over_base_bytes'] / array:>10.2f}"
                f" {r['out_bytes'] / 1e6:>9.0f} {r['max_other_cpu_s']:>11.1f}"
            )
            noisy |= any(noisy_run(run) for run in r["runs"])
        d = result["readers"]["dlcli"]
        if d["ratio_to_pyarrow"] > MAX_TIME_RATIO:
            failed.append(
                f"time at {rows:,} rows: dlcli / pyarrow {d['ratio_to_pyarrow']:.2f} > {MAX_TIME_RATIO}"
            )
        if d["peak_over_base_bytes"] > MAX_MEMORY_RATIO * array:
            failed.append(
                f"memory at {rows:,} rows: dlcli's peak {d['peak_over_base_bytes'] / 1e6:.0f} MB >"
                f" {MAX_MEMORY_RATIO} x {array / 1e6:.0f} MB of arrays"
            )
    print(
        "\nmedian s: the read alone, timed in a fresh process after its imports; ratio: median of the per-repeat"
        " ratios to pyarrow.csv.read_csv;\npeak MB: the process's peak RSS minus its RSS after the imports (median);"
        " peak/array: that over rows x 260 bytes (x float32 + y int64);\noutput MB: what the reader returned;"
        " other cpu-s: the most CPU time other processes used during one of the reader's runs"
    )
    if noisy:
        print(
            "warning: other processes used over 5% of a child's wall time in CPU; times are noisy,"
            " run again on a quiet machine or with more --repeats"
        )
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2) + "\n")
    if failed:
        print("FAIL: " + "; ".join(failed))
        return 1
    print(
        f"OK: dlcli within {MAX_TIME_RATIO}x pyarrow's time and {MAX_MEMORY_RATIO}x the arrays' size in memory"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
