"""``prismrec <command> --conf FILE --set a.b=c``: every stage, the demo, and doctor.

Exit codes: 0 success · 1 unexpected failure · 2 bad configuration ·
3 bad or missing input · 4 refused: training failed, the scored output failed its checks, or the quality gate held the model back ·
5 another run of the same date is in progress. Each comes from the error's own
``exit_code`` (:mod:`prismrec.errors`); the config is loaded, and checked in full, before
any Spark session or Horovod rank starts.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

# The exit codes are re-exported here, where scripts and tests that run the CLI look for them.
from prismrec.errors import (EXIT_BUSY, EXIT_CONFIG, EXIT_FAILURE, EXIT_INPUT, EXIT_OK,  # noqa: F401
                             EXIT_REFUSED, exit_code)
from prismrec.stages import REGISTRY

COMMANDS = {
    "doctor": "check the installed stack (versions, Horovod build, Java) and say how to fix it",
    **{name: stage.help for name, stage in REGISTRY.items()},
    "explain": "print one user's interests and recommendations with the reason for each",
    "demo": "the whole pipeline on the embedded synthetic logs, every system under both protocols",
    "run": "the nightly run for --date: preprocess → train → evaluate → quality gate → score → promote",
    "tune": "an Optuna study over tune.space on the preprocessed data, scored by validation NDCG@20; "
            "writes tuned.yaml (resumes an interrupted study)",
}
logger = logging.getLogger("prismrec")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="prismrec", description="Multi-interest recommendations: Spark + Horovod + TensorFlow.",
        epilog="exit codes: 0 ok, 1 unexpected failure, 2 bad config, 3 bad input, 4 refused (nothing published), "
               "5 another run of the same date is in progress (run)")
    commands = top.add_subparsers(dest="command", metavar="command", required=True)
    for name, help_text in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name != "doctor":
            sub.add_argument("--conf", action="append", default=[], metavar="FILE",
                             help="YAML config layered over the defaults (see conf/base.yaml); repeatable, "
                                  "each over the one before, e.g. --conf my.yaml --conf tuned.yaml")
            sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="override one config key, e.g. --set train.epochs=5 (repeatable)")
            sub.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
        if name == "train":
            sub.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        if name == "run":
            sub.add_argument("--date", required=True, help="the night's date, YYYY-MM-DD (events up to its end)")
            sub.add_argument("--lag-days", type=int, default=0,
                             help="run for this many days before --date (e.g. 1 with a scheduler's trigger date)")
            sub.add_argument("--force", action="store_true", help="rerun every stage, even completed ones")
            sub.add_argument("--force-step", "--force-stage", dest="force_step", default="", metavar="STEP",
                             help="rerun this step and every later one (preprocess, train, evaluate, "
                                  "quality_gate, score, promote)")
        if name == "explain":
            sub.add_argument("--user", required=True, help="the user_id to explain")
            sub.add_argument("--dt", default="", help="the scored day (default: the last one)")
    return top


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("py4j", "petastorm", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # TensorFlow's C++ start-up chatter hides the progress lines people need.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "doctor":
        from prismrec.doctor import report

        return report()
    configure_logging(args.log_level)
    from prismrec.config import load_config

    try:
        cfg = load_config(args.conf, args.overrides)
        if args.command == "demo":
            from prismrec.demo import run as demo

            demo(cfg)
        elif args.command == "explain":
            from prismrec.scoring.explain import explain

            print(explain(cfg, args.user, args.dt))
        elif args.command == "tune":
            from prismrec.tuning import run_tune

            run_tune(cfg)
        elif args.command == "run":
            from prismrec.nightly import parse_date, run_night

            run_night(cfg, parse_date(args.date, args.lag_days), args.force, args.force_step)
        else:
            from prismrec import stages

            options = {"resume": True} if args.command == "train" and args.resume else {}
            stages.run(args.command, cfg, **options)
    except Exception as error:  # one clear line, and the exit code the error carries
        code = exit_code(error)
        if code == EXIT_FAILURE:
            logger.exception("prismrec %s failed", args.command)
        print(f"prismrec {args.command}: error: {error}", file=sys.stderr)
        return code
    return EXIT_OK


def _entry(stage: str) -> int:
    return main([stage, *sys.argv[1:]])


def preprocess_entry() -> int:
    return _entry("preprocess")


def train_entry() -> int:
    return _entry("train")


def score_entry() -> int:
    return _entry("score")


def evaluate_entry() -> int:
    return _entry("evaluate")


def nightly_entry() -> int:
    return _entry("run")


if __name__ == "__main__":
    sys.exit(main())
