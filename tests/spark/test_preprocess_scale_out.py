"""The preprocess stage scales out: no query it runs puts every row through one task, and two
executors (``local-cluster``) write the same tables as one local process.

``prismrec preprocess`` runs in a subprocess with Spark's event log on: the log holds the
physical plan of every SQL execution (collects, writes, ``localCheckpoint``) and every job,
so nothing the stage runs escapes the check, and no UI port is needed.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.conftest import SPARK_HOME, finish, spark_environment
from conftest import TEST_CONF, tiny_config

# The tables every run writes; the training data's folder is named by its `_meta.json` entry.
TABLES = ("events", "quarantine", "items", "categories", "eval_users", "histories")
EXECUTION_START = "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart"
# The events that carry a physical plan: an execution's start, and each change adaptive execution makes.
PLAN_EVENTS = (EXECUTION_START, "org.apache.spark.sql.execution.ui.SparkListenerSQLAdaptiveExecutionUpdate")
PLAN_ID = re.compile(r", \[plan_id=\d+\]")
SORT_ORDER = re.compile(r" (ASC|DESC) NULLS (FIRST|LAST)")
# A global aggregate's partial half: one row per partition crosses its `Exchange SinglePartition`.
PARTIAL_GLOBAL_AGGREGATE = re.compile(r"\w*Aggregate\(keys?=\[\], functions=\[partial_")


def top_level(text: str) -> list[str]:
    """``text`` split at the commas outside any bracket: a plan node's arguments."""
    parts, depth, start = [], 0, 0
    for at, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:at].strip())
            start = at + 1
    return [*parts, text[start:].strip()]


def unwrapped(node: dict) -> dict:
    """The operator under code-generation wrappers (``WholeStageCodegen (n)``, ``InputAdapter``)."""
    while node["nodeName"].startswith(("WholeStageCodegen", "InputAdapter")) and node["children"]:
        node = node["children"][0]
    return node


def moves_every_row_to_one_task(node: dict) -> bool:
    """Whether a plan node (an event log ``sparkPlanInfo``) is a single-partition step.

    Spark 3.5 prints them as ``Coalesce 1``; ``Exchange SinglePartition`` (a window without a
    partition, a global limit, ``repartition(1)``) or an exchange into one partition
    (``hashpartitioning(user_id#8, 1)``), except under a global aggregate, whose partial half
    sends one row per partition; and ``Window [exprs], [partition], [order]``, where an empty
    partition (or order) is left out of the string.
    """
    name, text = node["nodeName"], node["simpleString"]
    if name == "Coalesce":
        return text == "Coalesce 1"
    if name == "Exchange":
        partitioning = top_level(text.removeprefix("Exchange "))[0]
        if partitioning == "SinglePartition":
            child = unwrapped(node["children"][0])
            return not PARTIAL_GLOBAL_AGGREGATE.match(child["simpleString"])
        arguments = re.fullmatch(r"\w+\((.*)\)", partitioning)
        return arguments is not None and top_level(arguments.group(1))[-1] == "1"
    if name == "Window":
        groups = top_level(text.removeprefix("Window "))
        return len(groups) < 2 or (len(groups) == 2 and bool(SORT_ORDER.search(groups[1])))
    return False


def plan_nodes(node: dict):
    """Every node of a ``sparkPlanInfo`` tree; cached plans are children of their ``InMemoryTableScan``."""
    yield node
    for child in node["children"]:
        yield from plan_nodes(child)


def read_event_log(folder: Path, timeout_s: float = 120) -> list[dict]:
    """The events of the one application logged in ``folder``.

    The driver JVM outlives ``prismrec``'s Python process by a few seconds: it drains its
    listener bus while it shuts down, and drops the ``.inprogress`` suffix once it is done.
    """
    deadline = time.time() + timeout_s
    while not (done := [p for p in folder.iterdir() if not p.name.endswith(".inprogress")]):
        if time.time() > deadline:
            raise TimeoutError(f"the event log in {folder} was not completed within {timeout_s} s")
        time.sleep(0.5)
    [log] = done
    return [json.loads(line) for line in log.read_text().splitlines()]


def written_table(execution: dict) -> str | None:
    """The folder a write execution wrote, by name (``items``), else None."""
    match = re.match(r"Execute InsertIntoHadoopFsRelationCommand (\S+?),", execution["sparkPlanInfo"]["simpleString"])
    if match is None:
        return None
    return match.group(1).rstrip("/").rsplit("/", 1)[-1]


def single_partition_steps(events: list[dict]) -> list[str]:
    """One line per single-partition step: the execution (id, job description, the table it writes or the
    action that ran it, e.g. ``Dataset.collectToPython``) and the plan node."""
    starts = {e["executionId"]: e for e in events if e["Event"] == EXECUTION_START}
    found = []
    for event in (e for e in events if e["Event"] in PLAN_EVENTS):
        start = starts[event["executionId"]]
        table, call = written_table(start), (start["details"] or "?").splitlines()[0]
        action = f"writes {table}" if table else call.removeprefix("org.apache.spark.sql.").split("(")[0]
        where = f"execution {event['executionId']} [{start['description']}] {action}"
        for node in plan_nodes(event["sparkPlanInfo"]):
            # Adaptive execution logs each plan again as it changes, with new plan ids.
            line = f"{where}: {PLAN_ID.sub('', node['simpleString'])[:200]}"
            if moves_every_row_to_one_task(node) and line not in found:
                found.append(line)
    return found


def shuffles_outside_sql(events: list[dict]) -> list[tuple[str, str]]:
    """(job description, RDD) for each shuffled or coalesced RDD of a job that ran in no SQL execution
    (an RDD action), which no plan shows. Spark's own such jobs read a Parquet footer for a schema."""
    return [(properties.get("spark.job.description"), rdd["Name"])
            for job in events if job["Event"] == "SparkListenerJobStart"
            if "spark.sql.execution.id" not in (properties := job.get("Properties") or {})
            for stage in job["Stage Infos"] for rdd in stage["RDD Info"]
            if rdd["Name"] in ("ShuffledRDD", "CoalescedRDD")]


def rows(folder: Path) -> tuple[pa.Schema | None, Counter]:
    """(schema, rows as a multiset) of a Parquet table; hive partition folders come back as columns."""
    if not any(folder.rglob("*.parquet")):  # Spark writes no file for a partitioned table without rows
        return None, Counter()
    table = pq.read_table(folder)

    def frozen(value):
        if isinstance(value, list):
            return tuple(frozen(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, frozen(v)) for k, v in value.items()))
        return value

    columns = sorted(table.column_names)
    return table.schema, Counter(tuple(frozen(row[c]) for c in columns) for row in table.to_pylist())


def spark_home(folder: Path) -> Path:
    """A SPARK_HOME whose ``bin`` and ``jars`` are the pip-installed pyspark's.

    ``local-cluster`` Workers run in the driver JVM and put their executors' folders under
    ``$SPARK_HOME/work``: this keeps them in the test's folder instead of the virtualenv.
    """
    folder.mkdir()
    for name in ("bin", "jars"):
        (folder / name).symlink_to(SPARK_HOME / name, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def scale_out_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """(the tiny synthetic logs' data folder, a private SPARK_HOME), made once."""
    from prismrec.stages import run as run_stage

    root = tmp_path_factory.mktemp("scale_out")
    cfg = tiny_config(root)
    run_stage("generate", cfg)
    return Path(cfg.paths.data), spark_home(root / "spark_home")


def preprocess(inputs: tuple[Path, Path], master: str, folder: Path) -> tuple[Path, list[dict]]:
    """``prismrec preprocess`` of the logs under ``master``, into ``folder``: (paths.output, event log)."""
    data, home = inputs
    output, event_log = folder / "output", folder / "event_log"
    event_log.mkdir(parents=True)
    conf = f'{{spark.eventLog.enabled: "true", spark.eventLog.dir: "{event_log.as_uri()}"}}'
    command = [sys.executable, "-m", "prismrec.cli", "preprocess", "--conf", str(TEST_CONF),
               "--set", f"paths.data={data}", "--set", f"paths.output={output}",
               "--set", f'spark.master="{master}"', "--set", f"spark.conf={conf}"]
    log = folder / "preprocess.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=folder,
                                   env={**spark_environment(), "SPARK_HOME": str(home)}, start_new_session=True)
        code = finish(process, timeout_s=600)
    assert code == 0, f"prismrec preprocess under {master} exited {code}:\n{log.read_text()[-5000:]}"
    return output, read_event_log(event_log)


@pytest.fixture(scope="module")
def local_run(scale_out_inputs, tmp_path_factory) -> tuple[Path, list[dict]]:
    """The stage under ``local[2]``, as conf/test.yaml sets it: (paths.output, event log)."""
    return preprocess(scale_out_inputs, "local[2]", tmp_path_factory.mktemp("local"))


@pytest.mark.spark
def test_no_query_of_the_stage_moves_every_row_into_one_task(local_run):
    output, events = local_run
    executions = [e for e in events if e["Event"] == EXECUTION_START]
    # Every table on disk was written by a logged execution: the log saw the whole stage.
    tables = {p.name for p in (output / "preprocessed").iterdir() if p.is_dir()}
    assert tables <= {written_table(e) for e in executions}, "the event log misses writes"
    steps = single_partition_steps(events)
    assert not steps, "single-partition steps in the preprocess stage's plans:\n" + "\n".join(steps)
    unplanned = shuffles_outside_sql(events)
    assert not unplanned, f"jobs outside SQL executions shuffle or coalesce: {unplanned}"


@pytest.mark.cluster
def test_two_executors_write_the_same_tables_as_one_local_process(scale_out_inputs, local_run, tmp_path_factory):
    local, _ = local_run
    cluster, events = preprocess(scale_out_inputs, "local-cluster[2,1,2048]", tmp_path_factory.mktemp("cluster"))
    executors = {e["Task Info"]["Executor ID"] for e in events if e["Event"] == "SparkListenerTaskEnd"}
    assert executors == {"0", "1"}, f"tasks ran on executors {executors}, not on both of local-cluster's"

    meta = {run: json.loads((run / "preprocessed" / "_meta.json").read_text()) for run in (local, cluster)}
    [training] = [key for key, value in meta[local].items() if isinstance(value, dict) and "row_groups" in value]
    for run in (local, cluster):
        folders = {p.name for p in (run / "preprocessed").iterdir() if p.is_dir()}
        assert folders == {*TABLES, training}, f"{run}: tables {sorted(folders)}"
    # config_hash covers spark.master and paths.output, the two settings that differ.
    assert ({k: v for k, v in meta[local].items() if k != "config_hash"}
            == {k: v for k, v in meta[cluster].items() if k != "config_hash"})

    differences = []
    for table in (*TABLES, training):
        (local_schema, local_rows), (cluster_schema, cluster_rows) = (
            rows(run / "preprocessed" / table) for run in (local, cluster))
        if local_schema != cluster_schema:
            differences.append(f"{table}: schema\n  local[2]: {local_schema}\n  local-cluster: {cluster_schema}")
        elif local_rows != cluster_rows:
            only_local, only_cluster = local_rows - cluster_rows, cluster_rows - local_rows
            differences.append(f"{table}: {sum(only_local.values())} rows only under local[2], e.g. "
                               f"{list(only_local)[:2]}; {sum(only_cluster.values())} only under local-cluster, "
                               f"e.g. {list(only_cluster)[:2]}")
    assert not differences, "\n".join(differences)
