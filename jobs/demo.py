"""spark-submit entry point for the whole pipeline on the embedded synthetic logs.

    spark-submit jobs/demo.py --conf conf/local.yaml

Trains every compared model under both evaluation protocols (``users`` in paths.output,
``time`` in paths.output/time_protocol) and prints where the recommendations, the
interests and the report are (``prismrec.demo``).
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
