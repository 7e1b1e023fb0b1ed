"""How long every command takes to refuse a bad config value (exit 2), against ``prismrec --help``.

Each command of the CLI that loads config is run with each bad value of ``BAD_VALUES``
(the ones checked only late before: a diversity under the share merge, a repeated name
in ``evaluate.compare``, a negative ``nightly.keep_models``), in a fresh interpreter, as
a user would. Prints the median wall seconds per command (one warm-up run excluded) and
its ratio to ``prismrec --help``, the CLI's own start-up, measured in the same sitting.

    .venv/bin/python bench/config_refusal.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

BAD_VALUES = {
    "score.diversity": ["score.merge=share", "score.diversity=0.1"],
    "evaluate.compare": ["evaluate.compare=[model, popularity, model]"],
    "nightly.keep_models": ["nightly.keep_models=-1"],
}
COMMANDS = (["generate"], ["preprocess"], ["train"], ["score"], ["evaluate"], ["explain", "--user", "u"],
            ["demo"], ["run", "--date", "2026-01-01"])


def seconds(args: list[str], expected: int, cwd: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "prismrec.cli", *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != expected:
        raise SystemExit(f"prismrec {' '.join(args)} exited {done.returncode}, expected {expected}:\n{done.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        seconds(["--help"], 0, work)  # warm-up: the file system cache
        peer = statistics.median(seconds(["--help"], 0, work) for _ in range(args.repeats))
        print(f"prismrec --help: {peer:.2f} s (median of {args.repeats})")
        worst = 0.0
        for command in COMMANDS:
            times = []
            for overrides in BAD_VALUES.values():
                sets = [arg for value in [f"paths.output={work}/out", *overrides] for arg in ("--set", value)]
                times += [seconds([*command, *sets], 2, work) for _ in range(args.repeats)]
            median = statistics.median(times)
            worst = max(worst, max(times))
            print(f"prismrec {command[0]:<10} exit 2: median {median:.2f} s, max {max(times):.2f} s "
                  f"over {len(times)} runs | {median / peer:.2f}x --help", flush=True)
        print(f"slowest refusal: {worst:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
