"""spark-submit entry point for the nightly run: preprocess → train → evaluate → quality gate → score → promote.

    spark-submit jobs/nightly.py --date 2026-01-14 --conf conf/cluster.yaml [--force | --force-step STEP]
                                 [--set key=value ...]

Arguments, config layering and exit codes are those of `prismrec run --help`; a failed
step exits non-zero and is named in the error and in output/runs/<date>/manifest.json.
"""
import sys

from prismrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
