"""Entry point for one rank under ``horovodrun``: ``python -m prismrec.training.rank_main SPEC OUT_DIR``."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from prismrec.training.loop import train_rank


def main(argv: list[str]) -> int:
    spec_path, out_dir = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = train_rank(json.loads(Path(spec_path).read_text()))
    (Path(out_dir) / f"rank-{result['rank']}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
