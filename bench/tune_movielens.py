"""`prismrec tune` on MovieLens-100K against the hand-chosen defaults, selected on validation, reported on test.

The data, protocol and ranking are those of bench/movielens.py (leave-last-out, full ranking,
seen items excluded). Three steps in one run:

1. the defaults (the --conf file as it is) are trained and scored on the validation and test users;
2. `prismrec tune` runs on the same preprocessed data for --budget seconds (tune.timeout_s);
3. the tuned layer (tuned.yaml over the --conf file) is trained the same way, preprocessing again
   when it changes preprocess.max_hist_len.

Prints the tune's trials, a table of both settings (valid NDCG@20; test Recall@20, NDCG@20 ± se,
Recall@50; the paired per-user test difference) and one JSON line.

    .venv/bin/python bench/tune_movielens.py [--work DIR] [--budget 1200] [--trials 20] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import movielens as ml  # noqa: E402  (the harness of bench/movielens.py)

from prismrec.cli import configure_logging  # noqa: E402
from prismrec.config import load_config  # noqa: E402


def evaluated(name: str, conf: list[str], overrides: list[str], spark, valid, test, catalogue: int) -> dict:
    """Train with the train stage and score valid and test users as bench/movielens.py does."""
    started = time.perf_counter()
    tuned = ml.tune(name, ml.prismrec_model(name, conf, overrides, spark), 1, valid, test)
    return ml.summary(name, tuned, test, catalogue, None, time.perf_counter() - started)


def splits(layout):
    import pandas as pd

    from prismrec import schema as S

    valid, test, _ = ml.read_splits(layout.table("eval_users"))
    return valid, test, len(pd.read_parquet(layout.table("items"), columns=[S.ITEM_IDX]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ml.ROOT / "output" / "bench-tune-movielens"))
    parser.add_argument("--conf", default=str(ml.ROOT / "conf" / "base.yaml"))
    parser.add_argument("--budget", type=int, default=1200, help="tune.timeout_s, seconds (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=20, help="tune.trials (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    configure_logging("INFO")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "conf.yaml"
    conf.write_text(Path(args.conf).read_text())
    csv = ml.movielens_csv(work)
    data = ml.data_overrides(csv, work / "output")
    settings = [*data, *args.overrides, f"tune.timeout_s={args.budget}", f"tune.trials={args.trials}",
                "tune.study=movielens"]
    cfg = load_config(conf, settings)

    from prismrec.layout import Layout
    from prismrec.spark import get_session
    from prismrec.stages import run as run_stage
    from prismrec.tuning import run_tune

    spark, layout = get_session(cfg), Layout.of(cfg)
    run_stage("preprocess", cfg, spark)
    valid, test, catalogue = splits(layout)
    default = evaluated("default", [str(conf)], settings, spark, valid, test, catalogue)

    started = time.perf_counter()
    result = run_tune(cfg, spark)
    tune_seconds = time.perf_counter() - started
    tuned_layer = Path(result["tuned"])
    tuned_cfg = load_config([conf, tuned_layer], settings)
    tuned_settings = settings
    if tuned_cfg.preprocess.max_hist_len != cfg.preprocess.max_hist_len:
        tuned_settings = [*settings, f"paths.output={work / 'output-tuned'}"]
        run_stage("preprocess", load_config([conf, tuned_layer], tuned_settings), spark)
    tuned_valid, tuned_test, _ = splits(Layout.of(load_config([conf, tuned_layer], tuned_settings)))
    assert [list(t) for t in tuned_test.targets] == [list(t) for t in test.targets], "test targets differ"
    tuned = evaluated("tuned", [str(conf), str(tuned_layer)], tuned_settings, spark, tuned_valid, tuned_test,
                      catalogue)

    diff = {m: tuned["per_user"][m] - default["per_user"][m] for m in ("ndcg@20", "recall@20")}
    rows = []
    for row in (default, tuned):
        rows.append({k: v for k, v in row.items() if k != "per_user" and "vs_als" not in k})
    print(f"\nprismrec tune on MovieLens-100K: {result['finished_trials']} finished trials ({result['ran']} this run) "
          f"in {tune_seconds:.0f}s of a {args.budget}s budget; best trial #{result['best_trial']} "
          f"(tune's validation NDCG@20 {result['best_valid_ndcg_at_20']:.4f}).\n")
    print("tuned.yaml:\n" + yaml.safe_dump(yaml.safe_load(tuned_layer.read_text()), sort_keys=True))
    print("| settings | valid NDCG@20 | test Recall@20 | test NDCG@20 ± se | test Recall@50 | coverage@50 | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['system']} | {row['valid_ndcg@20']:.4f} | {row['recall@20']:.4f} | {row['ndcg@20']:.4f} ± "
              f"{row['ndcg@20_se']:.4f} | {row['recall@50']:.4f} | {row['coverage@50']:.3f} | {row['seconds']:.0f} |")
    paired = {m: (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))) for m, d in diff.items()}
    print("\ntuned − default on test, paired per user: " + ", ".join(
        f"{m} {mean:+.4f} ± {se:.4f}" for m, (mean, se) in paired.items()))
    summary = {"default": rows[0], "tuned": rows[1], "tuned_params": result["best_params"],
               "trials": result["finished_trials"], "tune_seconds": round(tune_seconds, 1),
               "tuned_minus_default": {m: {"mean": mean, "se": se} for m, (mean, se) in paired.items()},
               "valid_no_worse": rows[1]["valid_ndcg@20"] >= rows[0]["valid_ndcg@20"]}
    (work / "results.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
