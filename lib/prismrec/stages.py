"""The pipeline's stages by name: what runs each one, and the report it returns.

The CLI, the demo and the nightly run all run stages through :func:`run`. Each stage's
own ``run`` says what it reads and writes; every one returns the frozen report of
:mod:`prismrec.reports` named here. The stage modules are imported when a stage runs,
so that ``prismrec --help`` and config checks start no JVM.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from prismrec.config import Config
from prismrec.reports import EvaluateReport, GenerateReport, PreprocessReport, ScoreReport, TrainReport


def _generate(spark, cfg: Config) -> GenerateReport:
    from prismrec.synthetic import run

    return run(cfg)


def _preprocess(spark, cfg: Config) -> PreprocessReport:
    from prismrec.preprocess.stage import run

    return run(spark, cfg)


def _train(spark, cfg: Config, model_id: str | None = None, resume: bool = False, parent_run_id: str | None = None,
           pruning: dict | None = None) -> TrainReport:
    from prismrec.training.launch import run

    return run(spark, cfg, model_id, resume, parent_run_id, pruning)


def _score(spark, cfg: Config) -> ScoreReport:
    from prismrec.scoring.stage import run

    return run(spark, cfg)


def _evaluate(spark, cfg: Config) -> EvaluateReport:
    from prismrec.evaluation.stage import run

    return run(spark, cfg)


@dataclass(frozen=True)
class Stage:
    """One stage: its ``help`` line, the function that runs it (``(spark, cfg, **options)``), the
    report type it returns, and whether it needs a SparkSession."""

    name: str
    help: str
    runner: Callable
    report: type
    needs_spark: bool = True


REGISTRY: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("generate", "write synthetic behaviour logs with planted interests to <paths.data>/synthetic",
          _generate, GenerateReport, needs_spark=False),
    Stage("preprocess", "raw logs → canonical events, vocabularies, Petastorm training data (Spark)",
          _preprocess, PreprocessReport),
    Stage("train", "train the multi-interest network with Horovod and export the model artifact",
          _train, TrainReport),
    Stage("score", "top-N recommendations and interests for every user (Spark pandas UDF), then publish",
          _score, ScoreReport),
    Stage("evaluate", "every compared system (models, popularity, ALS, item-kNN) on held-out users: "
          "report with plots", _evaluate, EvaluateReport),
)}
STAGES = tuple(REGISTRY)


def run(name: str, cfg: Config, spark=None, **options):
    """Run stage ``name`` with ``cfg`` (creating the SparkSession when it needs one and none is given);
    ``options`` go to the stage (train: ``model_id``, ``resume``, ``parent_run_id``, ``pruning``).
    Returns its report; raises ValueError for an unknown stage, and whatever the stage raises."""
    if name not in REGISTRY:
        raise ValueError(f"unknown stage {name!r}; known: {', '.join(STAGES)}")
    stage = REGISTRY[name]
    if stage.needs_spark and spark is None:
        from prismrec.spark import get_session

        spark = get_session(cfg)
    return stage.runner(spark, cfg, **options)
