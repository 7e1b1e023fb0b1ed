"""Shared by the bench scripts: run a command, sample its process tree's peak RSS, time it."""
from __future__ import annotations

import statistics
import subprocess
import threading
import time

import psutil


def run_measured(command: list[str], env: dict | None = None, cwd: str | None = None) -> dict:
    """Run ``command``; return wall seconds and the peak summed RSS (MiB) of it and its children."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{output[-4000:]}")
    return {"seconds": seconds, "peak_rss_mib": peak[0] / 2**20, "output": output}


def median_of(runs: list[dict]) -> dict:
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs), "runs": len(runs)}
