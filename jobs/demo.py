"""spark-submit entry point for the whole pipeline on the embedded synthetic logs.

    spark-submit jobs/demo.py --conf conf/local.yaml
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
