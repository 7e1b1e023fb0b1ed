"""``prismrec demo``: the whole pipeline on the embedded synthetic logs, every system under both protocols.

Per protocol, the logs are preprocessed into their own output root, then each model of
``DEMO_MODELS`` is trained as ``models/<encoder>``; the baselines need no training.
The primary protocol (``preprocess.protocol``) lives in ``paths.output``, where every
other command looks (``prismrec explain``, the notebooks); the other one in
``paths.output/<name>_protocol``. It is evaluated first, so that the primary report's
table holds both (``evaluate.other_outputs``). The main model is also scored.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from prismrec.config import Config

logger = logging.getLogger(__name__)
PROTOCOLS = ("users", "time")
DEMO_MODELS = ("self_attentive", "clustered", "mean_pool", "seed_mlp")  # the first is the main model (the default encoder)
BASELINES = ("popularity", "als", "itemknn")


def output_roots(cfg: Config) -> dict[str, Path]:
    """{protocol: output root}, the other protocols first and the primary one last."""
    primary = cfg.preprocess.protocol
    root = Path(cfg.paths.output)
    return {**{p: root / f"{p}_protocol" for p in PROTOCOLS if p != primary}, primary: root}


def protocol_config(cfg: Config, protocol: str, roots: dict[str, Path]) -> Config:
    others = [str(path) for name, path in roots.items() if name != protocol]
    return cfg.with_values({"preprocess.protocol": protocol, "paths.output": str(roots[protocol]),
                            "score.model_id": DEMO_MODELS[0], "evaluate.compare": [*DEMO_MODELS, *BASELINES],
                            "evaluate.other_outputs": others if protocol == cfg.preprocess.protocol else []},
                           "the demo")


def timed(label: str, work, *args, **kwargs):
    started = time.time()
    logger.info("demo: %s", label)
    result = work(*args, **kwargs)
    logger.info("demo: %s finished in %.1fs", label, time.time() - started)
    return result


def run(cfg: Config) -> dict:
    """Generate, then per protocol preprocess → train every model → (score) → evaluate; print where it
    all is. Returns ``{"score": ScoreReport, "evaluate": {protocol: EvaluateReport}}``."""
    from prismrec import stages
    from prismrec.spark import get_session

    started = time.time()
    timed("generate", stages.run, "generate", cfg)
    spark = get_session(cfg)
    roots = output_roots(cfg)
    results: dict = {"evaluate": {}}
    for protocol in roots:
        stage_cfg = protocol_config(cfg, protocol, roots)
        timed(f"preprocess ({protocol} protocol)", stages.run, "preprocess", stage_cfg, spark)
        for encoder in reversed(DEMO_MODELS):  # the main model last, so that models/LATEST is it
            timed(f"train {encoder} ({protocol} protocol)", stages.run, "train",
                  stage_cfg.with_values({"model.encoder": encoder}, "the demo"), spark, model_id=encoder)
        if protocol == cfg.preprocess.protocol:
            results["score"] = timed(f"score ({protocol} protocol)", stages.run, "score", stage_cfg, spark)
        results["evaluate"][protocol] = timed(f"evaluate ({protocol} protocol)", stages.run, "evaluate",
                                              stage_cfg, spark)
    summary(cfg, results, time.time() - started)
    return results


def summary(cfg: Config, results: dict, seconds: float) -> None:
    evaluation = results["evaluate"][cfg.preprocess.protocol]
    k = max(evaluation.ks)
    print(f"\nprismrec demo finished in {seconds / 60:.1f} min.")
    print(f"  recommendations: {results['score'].recommendations}")
    print(f"  user interests:  {results['score'].user_interests}")
    print(f"  report:          {evaluation.files['markdown']}  (figures beside it)")
    print(f"  run report:      {evaluation.run_report}")
    print(f"\n  {'system':<15}" + "".join(f"{p + ' recall@' + str(k):>20}{p + ' ndcg@' + str(k):>18}"
                                        for p in results["evaluate"]))
    for system in evaluation.systems:
        cells = []
        for result in results["evaluate"].values():
            values = result.metrics.get(system)
            cells += [f"{values[f'recall@{k}']:>20.4f}{values[f'ndcg@{k}']:>18.4f}" if values else f"{'n/a':>20}{'n/a':>18}"]
        print(f"  {system:<15}" + "".join(cells))
    for system, quality in evaluation.interest_quality.items():
        if quality.get("recovery_share") is not None:
            print(f"  {system}: planted interests recovered {quality['recovery_share']:.1%} "
                  f"({quality['evidenced_recovery_share']:.1%} of those the input shows ≥ 3 times)")
