"""spark-submit entry point for the generate stage.

    spark-submit jobs/generate.py --conf conf/cluster.yaml [--set key=value ...]

Arguments, config layering and exit codes are those of `prismrec generate --help`.
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
