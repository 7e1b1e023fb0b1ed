"""The SparkSession builder: a local default that defers to whatever spark-submit set."""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

from prismrec import schema as S
from prismrec.config import Config

logger = logging.getLogger(__name__)


def get_session(cfg: Config):
    """Return the active SparkSession, or build one from ``cfg.spark``.

    Under spark-submit or on Databricks a session (or its conf) already exists,
    and the master/app name it carries win: ``cfg.spark.master`` is only a default.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Executors' Python must be the driver's (the .venv), not whatever is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    submitted = "spark.master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "") or os.environ.get("SPARK_ENV_LOADED")
    if not submitted:
        builder = builder.master(cfg.spark.master).config("spark.driver.memory", cfg.spark.driver_memory)
    builder = (
        builder.appName(cfg.spark.app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.score.arrow_batch_rows))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    logger.info("spark session: master=%s, app=%s", spark.sparkContext.master, spark.sparkContext.appName)
    return spark


@contextmanager
def job_group(spark, stage: str, description: str):
    """Name the Spark jobs of a stage in the UI and event log."""
    spark.sparkContext.setJobGroup(stage, f"prismrec {stage}: {description}")
    try:
        yield
    finally:
        spark.sparkContext.setJobGroup(stage, f"prismrec {stage}")


# Spark's loggers that print a whole Java stack for every failed task: the executor's
# "Exception in task", the scheduler's "Lost task", and the shuffle writer's clean-up.
TASK_FAILURE_LOGGERS = ("org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager",
                        "org.apache.spark.storage.DiskBlockObjectWriter")


@contextmanager
def quiet_task_failures(spark):
    """Keep failed tasks' Java stacks off the console while a stage handles their errors itself.

    The failure still reaches Python as an exception that carries the whole trace, which
    the caller logs or turns into a one-line error. Nothing changes while prismrec logs at
    DEBUG. In local mode the executors share the driver's log4j; on a cluster their logs
    stay in the executors' own files.
    """
    if logging.getLogger("prismrec").isEnabledFor(logging.DEBUG):
        yield
        return
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    before = {name: log4j.LogManager.getLogger(name).getLevel() for name in TASK_FAILURE_LOGGERS}
    for name in TASK_FAILURE_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.OFF)
    try:
        yield
    finally:
        for name, level in before.items():
            log4j.core.config.Configurator.setLevel(name, level)


def table_schema(name: str):
    """Return the Spark StructType of table ``name`` (events, train_sequences, histories, recommendations, user_interests, quarantine); raises KeyError for any other name."""
    from pyspark.sql import types as T

    int_array = T.ArrayType(T.IntegerType(), containsNull=False)
    schemas = {
        "events": T.StructType([
            T.StructField(S.USER_ID, T.StringType(), False),
            T.StructField(S.ITEM_ID, T.StringType(), False),
            T.StructField(S.CATEGORY_ID, T.StringType(), False),
            T.StructField(S.EVENT_TYPE, T.StringType(), False),
            T.StructField(S.WEIGHT, T.FloatType(), False),
            T.StructField(S.TS, T.TimestampType(), False),
            T.StructField(S.DT, T.DateType(), False),
        ]),
        "train_sequences": T.StructType([
            T.StructField(S.USER_IDX, T.IntegerType(), False),
            T.StructField(S.SEQ, int_array, False),
            T.StructField(S.TARGET_POS, int_array, False),
        ]),
        "histories": T.StructType([
            T.StructField(S.USER_ID, T.StringType(), False),
            T.StructField(S.HIST_ITEMS, int_array, False),
            T.StructField(S.HIST_LEN, T.IntegerType(), False),
            T.StructField(S.SEEN_ITEMS, int_array, False),
        ]),
        "recommendations": T.StructType([
            T.StructField(S.USER_ID, T.StringType(), False),
            T.StructField(S.RANK, T.IntegerType(), False),
            T.StructField(S.ITEM_ID, T.StringType(), False),
            T.StructField(S.SCORE, T.FloatType(), False),
            T.StructField(S.INTEREST, T.IntegerType(), False),
            T.StructField(S.CATEGORY_ID, T.StringType(), False),
            T.StructField(S.FALLBACK, T.BooleanType(), False),
        ]),
        "user_interests": T.StructType([
            T.StructField(S.USER_ID, T.StringType(), False),
            T.StructField(S.INTEREST, T.IntegerType(), False),
            T.StructField(S.WEIGHT, T.FloatType(), False),
            T.StructField(S.TOP_CATEGORIES, T.ArrayType(T.StringType(), False), False),
            T.StructField(S.VECTOR, T.ArrayType(T.FloatType(), False), False),
        ]),
        "quarantine": T.StructType([
            T.StructField(S.RAW, T.StringType()),
            T.StructField(S.REASON, T.StringType(), False),
            T.StructField(S.SOURCE_FILE, T.StringType()),
            T.StructField(S.RUN_ID, T.StringType(), False),
        ]),
    }
    if name not in schemas:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(sorted(schemas))}")
    return schemas[name]
