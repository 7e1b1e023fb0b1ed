"""spark-submit entry point for the train stage.

    spark-submit jobs/train.py --conf conf/cluster.yaml [--set key=value ...]

Arguments, config layering and exit codes are those of `prismrec train --help`.
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
