"""Entry point for one rank under ``horovodrun``: ``python -m prismrec.training.rank_main SPEC OUT_DIR``.

Writes ``OUT_DIR/rank-<r>.json``: the rank's summary, or its error.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from prismrec.training.loop import train_rank


def main(argv: list[str]) -> int:
    spec_path, out_dir = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rank = int(os.environ.get("HOROVOD_RANK", "0"))  # set by horovodrun itself, not a setting
    try:
        result = train_rank(json.loads(Path(spec_path).read_text()))
    except Exception as error:  # reported to the driver, then the rank fails
        (Path(out_dir) / f"rank-{rank}.json").write_text(json.dumps({"rank": rank, "error": str(error)}))
        logging.getLogger("prismrec").error("rank %d failed: %s", rank, error)
        return 1
    (Path(out_dir) / f"rank-{result['rank']}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
