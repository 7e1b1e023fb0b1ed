"""spark-submit entry point for `prismrec tune`.

    spark-submit jobs/tune.py --conf conf/cluster.yaml [--set tune.trials=40 ...]

Arguments, config layering and exit codes are those of `prismrec tune --help`.
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
