"""spark-submit entry point for the preprocess stage.

    spark-submit jobs/preprocess.py --conf conf/cluster.yaml [--set key=value ...]

Arguments, config layering and exit codes are those of `prismrec preprocess --help`.
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
