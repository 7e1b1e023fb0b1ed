"""Benchmark the preprocess job against a DuckDB peer that writes the same tables.

For each size (default 1 M and 10 M events) it generates synthetic Taobao-style
logs once, then, each in its own process on the same CSV:

- prismrec: the whole ``prismrec preprocess`` job (local[2]): validation, dedup,
  filters, vocabularies, sequences, Petastorm training data, evaluation users,
  histories, events table;
- DuckDB, full peer (``bench/duckdb_peer.py``, 2 threads): the same tables from the same
  CSV under the same settings (a test keeps them row for row equal); the ratio is to it;
- DuckDB, sequence step only (2 threads): dedup, then each user's last-L items in time
  order, written to Parquet: the figure earlier runs reported, kept for continuity.

Prints seconds (median of --repeats after one warm-up run per tool at the smallest
size), events/s, peak RSS of the process tree, the prismrec / full-peer time ratio,
the size of the training data each wrote, and how prismrec's time grows from the
smallest to the largest size.

With ``--baseline-lib DIR`` (the ``lib`` folder of another checkout, e.g. a ``git worktree``
of an earlier commit) the same job from that code runs too, interleaved with this one's
runs (``--baseline-repeats`` of them), into its own output folder, and the ratio of the two
medians and of the two training-data sizes is printed: a before/after check from one sitting.

    .venv/bin/python bench/preprocess.py [--sizes 1000000 10000000] [--repeats 3] [--baseline-lib DIR]
        [--baseline-repeats N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from _measure import median_of, run_measured  # noqa: E402

PEER_OUT = "duckdb-peer-out"
# The sequence step alone (not the same work as prismrec's job): the figure of earlier runs.
SEQUENCE_STEP_SQL = """
SET threads TO 2;
COPY (
  WITH events AS (
    SELECT DISTINCT * FROM read_csv('{csv}', header = false, delim = ',',
      columns = {{'user_id': 'VARCHAR', 'item_id': 'VARCHAR', 'category_id': 'VARCHAR',
                 'behavior': 'VARCHAR', 'ts': 'BIGINT'}})
  ),
  recent AS (
    SELECT user_id, item_id, ts,
           row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, item_id DESC) AS back
    FROM events
  )
  SELECT user_id, list(item_id ORDER BY ts, item_id) AS hist_items
  FROM recent WHERE back <= {max_hist_len} GROUP BY user_id
) TO '{out}' (FORMAT PARQUET);
"""


def generate(work: Path, events: int) -> Path:
    from prismrec.synthetic import SyntheticSpec, generate as make_logs, write

    folder = work / f"logs-{events}"
    csv = folder / "UserBehavior.csv"
    if not csv.exists():
        users = max(1000, events // 40)
        spec = SyntheticSpec(num_users=users, num_items=max(2000, events // 100), num_categories=200,
                             num_topics=20, mean_events_per_user=40.0, seed=11)
        write(make_logs(spec), folder)
    return csv


def run_prismrec(csv: Path, work: Path, max_hist_len: int, lib: str = "") -> dict:
    """The whole preprocess job, into ``work/prismrec-out``; from the code under ``lib`` instead of
    the installed one when given, into ``work/baseline-out``."""
    out = work / ("baseline-out" if lib else "prismrec-out")
    command = [sys.executable, "-m", "prismrec.cli", "preprocess", "--log-level", "WARNING",
               "--set", "source.format=taobao", "--set", f"source.path={csv}",
               "--set", f"paths.output={out}", "--set", "spark.driver_memory=8g",
               "--set", f"preprocess.max_hist_len={max_hist_len}", "--set", "run.dt=2026-12-31"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **({"PYTHONPATH": lib} if lib else {})}
    return run_measured(command, env=env)


def run_duckdb_peer(csv: Path, work: Path, max_hist_len: int) -> dict:
    """bench/duckdb_peer.py: every table prismrec writes, in one process with 2 threads, under ``work/PEER_OUT``."""
    return run_measured([sys.executable, str(BENCH / "duckdb_peer.py"), "--csv", str(csv),
                         "--out", str(work / PEER_OUT), "--threads", "2",
                         "--set", f"preprocess.max_hist_len={max_hist_len}"])


def run_duckdb_sequence_step(csv: Path, work: Path, max_hist_len: int) -> dict:
    sql = SEQUENCE_STEP_SQL.format(csv=csv, out=work / "duckdb-out.parquet", max_hist_len=max_hist_len)
    return run_measured([sys.executable, "-c", f"import duckdb; duckdb.connect().execute({sql!r})"])


def training_data(preprocessed: Path) -> Path:
    """The training-data folder: per-user ``train_sequences``, or the materialised
    ``train_examples`` windows that a ``--baseline-lib`` checkout from before may write."""
    sequences = preprocessed / "train_sequences"
    return sequences if sequences.exists() else preprocessed / "train_examples"


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-hist-len", type=int, default=50)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "prismrec-bench-preprocess"))
    parser.add_argument("--baseline-lib", default="", help="lib folder of the code to compare with (interleaved runs)")
    parser.add_argument("--baseline-repeats", type=int, default=None,
                        help="runs of the baseline per size (default: --repeats)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = sorted(args.sizes)
    csvs = {size: generate(work, size) for size in sizes}
    counts = {size: sum(1 for _ in open(csvs[size])) for size in sizes}
    run_prismrec(csvs[sizes[0]], work, args.max_hist_len)  # warm-up: OS caches, JIT-free but page cache
    run_duckdb_peer(csvs[sizes[0]], work, args.max_hist_len)
    run_duckdb_sequence_step(csvs[sizes[0]], work, args.max_hist_len)
    results = {}
    for size in sizes:
        runs, baseline_runs = [], []
        baseline_repeats = args.repeats if args.baseline_repeats is None else args.baseline_repeats
        for repeat in range(args.repeats):
            runs.append(run_prismrec(csvs[size], work, args.max_hist_len))
            if args.baseline_lib and repeat < baseline_repeats:
                baseline_runs.append(run_prismrec(csvs[size], work, args.max_hist_len, args.baseline_lib))
        prismrec = median_of(runs)
        if baseline_runs:
            baseline = median_of(baseline_runs)
            sizes_now = [folder_bytes(training_data(work / out / "preprocessed")) for out in ("baseline-out", "prismrec-out")]
            print(f"{counts[size]:>11,} events | baseline {args.baseline_lib}: {baseline['seconds']:7.1f} s "
                  f"(peak {baseline['peak_rss_mib']:6.0f} MiB, runs {[round(r['seconds'], 1) for r in baseline_runs]}) | "
                  f"this code: {prismrec['seconds']:7.1f} s (runs {[round(r['seconds'], 1) for r in runs]}) | "
                  f"this/baseline = {prismrec['seconds'] / baseline['seconds']:.3f}x | training data: baseline "
                  f"{sizes_now[0]:,} bytes, this code {sizes_now[1]:,} bytes ({sizes_now[0] / sizes_now[1]:.1f}x smaller)",
                  flush=True)
        peer_runs = [run_duckdb_peer(csvs[size], work, args.max_hist_len) for _ in range(args.repeats)]
        peer = median_of(peer_runs)
        step = median_of([run_duckdb_sequence_step(csvs[size], work, args.max_hist_len) for _ in range(args.repeats)])
        sequence_bytes = {name: folder_bytes(training_data(folder))
                          for name, folder in (("prismrec", work / "prismrec-out" / "preprocessed"),
                                               ("duckdb_peer", work / PEER_OUT))}
        results[size] = {"events": counts[size], "prismrec": prismrec, "duckdb_peer": peer,
                         "duckdb_sequence_step": step, "ratio": prismrec["seconds"] / peer["seconds"],
                         "train_sequences_bytes": sequence_bytes}
        print(f"{counts[size]:>11,} events | prismrec {prismrec['seconds']:7.1f} s "
              f"({counts[size] / prismrec['seconds']:>9,.0f} ev/s, peak {prismrec['peak_rss_mib']:6.0f} MiB) | "
              f"duckdb full peer {peer['seconds']:6.1f} s ({counts[size] / peer['seconds']:>10,.0f} ev/s, "
              f"peak {peer['peak_rss_mib']:5.0f} MiB) | prismrec/duckdb peer = {results[size]['ratio']:.2f}x | runs: "
              f"prismrec {[round(r['seconds'], 1) for r in runs]}, peer {[round(r['seconds'], 1) for r in peer_runs]}",
              flush=True)
        print(f"{'':>11}        | duckdb sequence step only (dedup + last-L items, not the same work) "
              f"{step['seconds']:6.1f} s (peak {step['peak_rss_mib']:5.0f} MiB) | training data: prismrec "
              f"{sequence_bytes['prismrec']:,} bytes, duckdb peer {sequence_bytes['duckdb_peer']:,} bytes", flush=True)
    if len(sizes) > 1:
        small, large = results[sizes[0]], results[sizes[-1]]
        growth = large["prismrec"]["seconds"] / small["prismrec"]["seconds"]
        scale = large["events"] / small["events"]
        print(f"prismrec time grows {growth:.2f}x for {scale:.1f}x the events "
              f"({'sub-linear or linear' if growth <= scale else 'super-linear'})")
    print(json.dumps({str(size): result for size, result in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
