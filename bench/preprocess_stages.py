"""Where the preprocess job's time goes: wall time and executor CPU per phase, from Spark's own metrics.

Runs ``prismrec preprocess`` in this process (local[2], driver 8 GB) on the synthetic CSV
that ``bench/preprocess.py`` generates (same sizes, same seed, same folder), then reads the
Spark UI's REST API: each phase is one job group, its wall time is the sum of its SQL
executions' durations, its CPU and task time the sums over its stages. Task time over
wall time shows how well the phase keeps both cores busy.

Then the DuckDB peer (``bench/duckdb_peer.py``, 2 threads, its own process) runs on the same
CSV, and its phases are printed beside: wall time and the CPU time of its process.

    .venv/bin/python bench/preprocess_stages.py [--events 10000000] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess import PEER_OUT, generate, run_duckdb_peer  # noqa: E402


def rest(spark, endpoint: str) -> list[dict]:
    context = spark.sparkContext
    url = f"{context.uiWebUrl}/api/v1/applications/{context.applicationId}/{endpoint}"
    with urllib.request.urlopen(url) as response:
        return json.load(response)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--max-hist-len", type=int, default=50)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "prismrec-bench-preprocess"))
    args = parser.parse_args()
    work = Path(args.work)
    csv = generate(work, args.events)

    from prismrec.config import load_config
    from prismrec.preprocess.stage import run
    from prismrec.spark import get_session

    cfg = load_config(None, ["source.format=taobao", f"source.path={csv}", f"paths.output={work / 'stages-out'}",
                             "spark.driver_memory=8g", f"preprocess.max_hist_len={args.max_hist_len}",
                             "run.dt=2026-12-31"])
    started = time.time()
    spark = get_session(cfg)
    session_s = time.time() - started
    started = time.time()
    meta = run(spark, cfg)
    job_s = time.time() - started

    phases: dict[str, dict] = defaultdict(lambda: {"wall": 0.0, "task": 0.0, "cpu": 0.0, "gc": 0.0})
    for execution in rest(spark, "sql?details=false"):
        phases[execution["description"]]["wall"] += execution["duration"] / 1000
    for stage in rest(spark, "stages"):
        if stage["status"] == "COMPLETE":
            phase = phases[stage.get("description") or stage["name"]]
            phase["task"] += stage["executorRunTime"] / 1000
            phase["cpu"] += stage["executorCpuTime"] / 1e9
            phase["gc"] += stage["jvmGcTime"] / 1000
    print(f"{meta.counts.input:,} input records; session start {session_s:.1f} s, job {job_s:.1f} s")
    print(f"{'phase':<92} {'wall s':>7} {'task s':>7} {'CPU s':>7} {'GC s':>6}")
    for name, phase in phases.items():
        print(f"{name[:92]:<92} {phase['wall']:7.1f} {phase['task']:7.1f} {phase['cpu']:7.1f} {phase['gc']:6.1f}")
    totals = {key: sum(phase[key] for phase in phases.values()) for key in ("wall", "task", "cpu", "gc")}
    print(f"{'all Spark work':<92} {totals['wall']:7.1f} {totals['task']:7.1f} {totals['cpu']:7.1f} {totals['gc']:6.1f}")
    print(f"outside Spark jobs (driver-side planning, footers, report): {job_s - totals['wall']:.1f} s")
    spark.stop()
    print_peer_phases(csv, work, args.max_hist_len)
    return 0


def print_peer_phases(csv: Path, work: Path, max_hist_len: int) -> None:
    """Run the DuckDB peer on ``csv`` in its own process; print its phases' wall and CPU seconds."""
    measured = run_duckdb_peer(csv, work, max_hist_len)
    phases = json.loads((work / PEER_OUT / "_meta.json").read_text())["phases"]
    print(f"\nDuckDB peer (2 threads): {measured['seconds']:.1f} s in all, peak {measured['peak_rss_mib']:.0f} MiB")
    print(f"{'phase':<92} {'wall s':>7} {'CPU s':>7}")
    for phase in phases:
        print(f"{phase['name']:<92} {phase['wall_s']:7.1f} {phase['cpu_s']:7.1f}")
    print(f"{'all phases':<92} {sum(p['wall_s'] for p in phases):7.1f} {sum(p['cpu_s'] for p in phases):7.1f}")


if __name__ == "__main__":
    sys.exit(main())
