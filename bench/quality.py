"""Model quality on the planted synthetic data at the demo size: every encoder against popularity.

Generates (if needed) and preprocesses the demo logs, trains each encoder with the
same data, seed and budget, and prints validation Recall@50 / NDCG@50 (the model
selection metric, full ranking on the validation users) and test metrics from the
evaluate stage (with the share of planted interests each model recovers), and each model's
ratio to the single-vector ``mean_pool``.

    .venv/bin/python bench/quality.py [--conf conf/local.yaml] [--encoders ...] [--set k=v ...]
"""
from __future__ import annotations

import argparse
import json
import sys

from prismrec.cli import configure_logging
from prismrec.config import load_config
from prismrec.models import ENCODERS
from prismrec.stages import run as run_stage


def _share(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="conf/local.yaml")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--skip-preprocess", action="store_true")
    args = parser.parse_args()
    configure_logging("WARNING")
    cfg = load_config(args.conf, args.overrides)
    if not args.skip_preprocess:
        run_stage("generate", cfg)
        run_stage("preprocess", cfg)
    results = {}
    for encoder in args.encoders:
        encoder_cfg = load_config(args.conf, [*args.overrides, f"model.encoder={encoder}"])
        report = run_stage("train", encoder_cfg, model_id=f"quality-{encoder}")
        best = report.best_epoch
        # The learned baselines (ALS, item-kNN) are compared in the demo report, not here.
        evaluation = run_stage("evaluate", load_config(args.conf, [
            *args.overrides, f"score.model_id=quality-{encoder}", "evaluate.compare=[model, popularity]"]))
        quality = evaluation.interest_quality.get("model", {})
        results[encoder] = {"valid_recall@50": best.valid_recall, "valid_ndcg@50": best.valid_ndcg,
                            "test": evaluation.metrics["model"], "seconds": report.seconds,
                            "recovery_share": quality.get("recovery_share")}
        results["popularity"] = {"test": evaluation.metrics["popularity"]}
        print(f"{encoder:>15}: valid recall@50 {best.valid_recall:.4f} ndcg@50 {best.valid_ndcg:.4f} | "
              f"test recall@50 {evaluation.metrics['model']['recall@50']:.4f} | planted interests recovered "
              f"{_share(quality.get('recovery_share'))} (train {report.seconds:.0f}s)", flush=True)
    if "mean_pool" in results:
        base = results["mean_pool"]
        print("\nratio to mean_pool (single vector):")
        for name, values in results.items():
            if "valid_recall@50" in values:
                print(f"{name:>15}: valid recall@50 x{values['valid_recall@50'] / base['valid_recall@50']:.3f}, "
                      f"test recall@50 x{values['test']['recall@50'] / base['test']['recall@50']:.3f}")
        print(f"{'popularity':>15}: test recall@50 {results['popularity']['test']['recall@50']:.4f}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
