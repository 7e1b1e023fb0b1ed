"""Entry points for one rank in its own interpreter, and the logging it needs there.

Under ``horovodrun``: ``python -m prismrec.training.rank_main SPEC OUT_DIR`` writes
``OUT_DIR/rank-<r>.json``: the rank's summary, or its error. Under ``horovod.spark.run``:
:func:`spark_rank`. Under the ``local`` launcher the rank is the driver and logs through
the CLI's handlers.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from prismrec.training.loop import train_rank
from prismrec.training.relay import RelayHandler

logger = logging.getLogger(__name__)


def horovod_rank() -> int:
    """This process's rank, set by the launcher itself (Gloo's HOROVOD_RANK), not a setting."""
    return int(os.environ.get("HOROVOD_RANK", "0"))


def configure_rank_logging(rank: int, level: int | str, relay: dict | None = None) -> None:
    """Rank 0 logs at the driver's ``level`` (progress, counts); the other ranks warnings and errors only.

    Rank 0 sends its records to the driver's :class:`~prismrec.training.relay.DriverRelay` at
    ``relay`` when given; otherwise, like every other rank, it writes to stderr, which both
    launchers forward to the driver's console with the rank as prefix.
    """
    handler, unreachable = logging.StreamHandler(), None
    if rank == 0 and relay is not None:
        try:
            handler = RelayHandler(relay)
        except OSError as error:
            unreachable = error
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level if rank == 0 else logging.WARNING, handlers=[handler], force=True)
    for noisy in ("petastorm", "tensorflow", "h5py", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if unreachable is not None:
        logger.warning("no log relay at %s:%s (%s); rank 0 logs to stderr, which reaches the driver late",
                       relay["host"], relay["port"], unreachable)


def spark_rank(spec: dict, relay: dict) -> dict:
    """:func:`train_rank` under ``horovod.spark.run``, with logging configured first.

    horovod.spark runs each rank in a fresh ``python -m horovod.spark.task.gloo_exec_fn``
    whose ``task_exec`` (horovod/spark/task/__init__.py) calls the function with no logging
    configured, so Python's last-resort handler would drop every INFO progress line.
    """
    configure_rank_logging(horovod_rank(), spec["log_level"], relay)
    return train_rank(spec)


def main(argv: list[str]) -> int:
    spec_path, out_dir = argv
    spec = json.loads(Path(spec_path).read_text())
    rank = horovod_rank()
    configure_rank_logging(rank, spec["log_level"])
    try:
        result = train_rank(spec)
    except Exception as error:  # reported to the driver, then the rank fails
        (Path(out_dir) / f"rank-{rank}.json").write_text(json.dumps({"rank": rank, "error": str(error)}))
        logging.getLogger("prismrec").error("rank %d failed: %s", rank, error)
        return 1
    (Path(out_dir) / f"rank-{result['rank']}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
