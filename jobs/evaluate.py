"""spark-submit entry point for the evaluate stage.

    spark-submit jobs/evaluate.py --conf conf/cluster.yaml [--set key=value ...]

Writes reports/<run_id>/evaluation.{json,md} and the PNG figures for every system of
evaluate.compare (docs/evaluation.md). Arguments, config layering and exit codes are
those of `prismrec evaluate --help`.
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
