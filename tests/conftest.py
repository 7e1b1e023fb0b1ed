"""Shared fixtures: one session-scoped local SparkSession and a tiny preprocessed dataset."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_CONF = ROOT / "conf" / "test.yaml"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Everything in the tests talks over loopback only.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def tiny_config(tmp: Path, *overrides: str):
    from prismrec.config import load_config

    return load_config(TEST_CONF, [f"paths.data={tmp / 'data'}", f"paths.output={tmp / 'output'}", *overrides])


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("prismrec-tests")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def preprocessed(spark, tmp_path_factory):
    """Tiny synthetic logs, generated and preprocessed once: (cfg, preprocess report)."""
    from prismrec.stages import run as run_stage

    cfg = tiny_config(tmp_path_factory.mktemp("pipeline"))
    run_stage("generate", cfg)
    return cfg, run_stage("preprocess", cfg, spark)


@pytest.fixture(scope="session")
def scored_tiny(spark, preprocessed):
    """The tiny dataset trained (one process) and scored: (cfg, preprocess, train, score reports)."""
    from prismrec.stages import run as run_stage

    cfg, meta = preprocessed
    return cfg, meta, run_stage("train", cfg, spark), run_stage("score", cfg, spark)


@pytest.fixture(scope="session")
def time_protocol(spark, tmp_path_factory):
    """Tiny logs preprocessed under the ``time`` protocol, one model trained: (cfg, preprocess, train reports).

    A one-point ALS grid keeps the evaluations that use it short.
    """
    from prismrec.stages import run as run_stage

    cfg = tiny_config(tmp_path_factory.mktemp("time_protocol"), "preprocess.protocol=time",
                      "evaluate.als_ranks=[8]", "evaluate.als_reg_params=[0.1]")
    run_stage("generate", cfg)
    meta = run_stage("preprocess", cfg, spark)
    return cfg, meta, run_stage("train", cfg, spark)
