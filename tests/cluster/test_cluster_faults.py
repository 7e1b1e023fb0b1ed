"""Failure drills on the standalone cluster: a lost executor, a killed Horovod rank, reruns."""
from __future__ import annotations

import contextlib
import json
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from prismrec.nightly import STEPS

from .conftest import NIGHT, ROOT, finish, manifest, nightly_args

pytestmark = pytest.mark.cluster
TABLES = ("events", "quarantine", "items", "categories", "train_sequences", "eval_users", "histories")


def table(output: Path, name: str) -> pd.DataFrame:
    """A preprocessed table with arrays as tuples, rows in a canonical order (Spark's file order is not)."""
    frame = pd.read_parquet(output / "preprocessed" / name)
    for column in frame.columns:
        if str(frame[column].dtype) == "category":  # a partition column
            frame[column] = frame[column].astype(str)
        elif frame[column].map(lambda value: isinstance(value, np.ndarray)).any():
            frame[column] = frame[column].map(tuple)
    frame = frame[sorted(frame.columns)]
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def wait_for_line(log: Path, text: str, process, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline and process.poll() is None:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"'{text}' never appeared in {log} (driver exit code {process.poll()})")


def test_executor_lost_during_preprocess_still_writes_the_clean_runs_tables(cluster, clean_night, tiny_logs,
                                                                             tmp_path):
    output, log = tmp_path / "output", tmp_path / "preprocess.log"
    driver = cluster.submit("jobs/preprocess.py", "--conf", str(ROOT / "conf" / "test.yaml"),
                            "--set", f"paths.data={tiny_logs}", "--set", f"paths.output={output}",
                            "--set", f"run.dt={NIGHT}", log=log)
    # After the first action its cached input blocks and shuffle files live on both executors.
    wait_for_line(log, "input records", driver)
    cluster.kill_worker(1)
    # A replacement joins, as a cluster manager would provide; the lost blocks are recomputed either way.
    cluster.start_worker()
    assert finish(driver) == 0, log.read_text()[-3000:]
    cluster.wait_for_workers(2)
    assert "Lost executor" in log.read_text(errors="replace")  # the job really ran through the loss
    for name in TABLES:
        pd.testing.assert_frame_equal(table(output, name), table(clean_night, name), obj=name)
    meta, clean = (json.loads((o / "preprocessed" / "_meta.json").read_text()) for o in (output, clean_night))
    for key in ("counts", "users_by_split", "num_items", "train_sequences", "dt"):
        assert meta[key] == clean[key], key


def horovod_ranks(cluster) -> dict[int, psutil.Process]:
    """The rank processes horovod.spark started under this cluster's Workers, by rank.

    Only descendants of our Workers count: other Horovod jobs on the machine are not ours to kill.
    """
    workers = {worker.pid for worker in cluster.workers}
    ranks = {}
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            rank = process.environ().get("HOROVOD_RANK")
            if (rank is not None and "horovod.spark.task.gloo_exec_fn" in " ".join(process.info["cmdline"] or [])
                    and workers & {parent.pid for parent in process.parents()}):
                ranks[int(rank)] = process
    return ranks


def kill_rank_one_after_the_first_checkpoint(cluster, checkpoint: Path, killed: list) -> None:
    deadline = time.time() + 400
    while time.time() < deadline and not (checkpoint / "last" / "checkpoint").exists():
        time.sleep(0.1)
    victim = horovod_ranks(cluster).get(1)
    if victim is not None:
        victim.send_signal(signal.SIGKILL)
        killed.append(victim.pid)


def test_killed_rank_fails_the_train_step_then_the_rerun_resumes_and_promotes_once(cluster, clean_night,
                                                                                    tiny_logs, tmp_path):
    # A copy of the clean night's output with nothing promoted: preprocess is done, training is forced.
    output = tmp_path / "output"
    shutil.copytree(clean_night, output)
    (output / "models" / "PROMOTED.json").unlink()
    model_id = manifest(output)["steps"]["train"]["counts"]["model_id"]
    killed: list[int] = []
    killer = threading.Thread(target=kill_rank_one_after_the_first_checkpoint,
                              args=(cluster, output / "checkpoints" / model_id, killed))
    killer.start()
    log = tmp_path / "killed.log"
    code = finish(cluster.submit("jobs/nightly.py", *nightly_args(tiny_logs, output, "--force-step", "train"),
                                 log=log))
    killer.join()
    assert killed, "rank 1 was never found to kill"
    assert code == 4, log.read_text()[-3000:]  # training failed: refused
    assert f"nightly {NIGHT}: step train failed" in log.read_text(errors="replace")
    night = manifest(output)
    assert (night["status"], night["failed_step"], night["steps"]["train"]["status"]) == ("failed", "train", "failed")
    assert "Exit code: 137" in night["steps"]["train"]["error"]
    assert not (output / "models" / "PROMOTED.json").exists()
    # Nothing was exported over the clean night's artifact.
    clean_artifact = (clean_night / "models" / model_id / "manifest.json").read_text()
    assert (output / "models" / model_id / "manifest.json").read_text() == clean_artifact
    assert horovod_ranks(cluster) == {}  # no orphaned rank

    log = tmp_path / "resumed.log"
    assert finish(cluster.submit("jobs/nightly.py", *nightly_args(tiny_logs, output), log=log)) == 0, \
        log.read_text()[-3000:]
    night = manifest(output)
    assert night["attempts"][-1]["skipped"] == ["preprocess"]
    assert night["attempts"][-1]["ran"] == list(STEPS[1:])
    train = night["steps"]["train"]["counts"]
    assert train["resumed"] and train["first_epoch"] == 2  # it continued after epoch 1, it did not start over
    promoted = json.loads((output / "models" / "PROMOTED.json").read_text())
    assert promoted["model_id"] == model_id
    assert [p.name for p in (output / "recommendations").iterdir()] == [f"dt={NIGHT}"]
    assert len(pd.read_parquet(output / "recommendations" / f"dt={NIGHT}")) == 300 * 20
    assert not (output / "checkpoints" / model_id).exists()  # promoted: the checkpoint is no longer needed
