"""spark-submit entry point for the score stage.

    spark-submit jobs/score.py --conf conf/cluster.yaml [--set key=value ...]

Arguments, config layering and exit codes are those of `prismrec score --help`.
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
