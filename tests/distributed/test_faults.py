"""Failure drills with real Horovod ranks: a killed rank, a NaN loss, resume from checkpoint."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from prismrec.config import from_dict
from prismrec.training.launch import TrainingError, run

pytestmark = pytest.mark.distributed


def configured(cfg, **train):
    data = cfg.to_dict()
    data["train"].update(launcher="horovodrun", num_proc=2, **train)
    return from_dict(data)


def rank_process(rank: int):
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "prismrec.training.rank_main" in " ".join(process.info["cmdline"] or []) \
                    and process.environ().get("HOROVOD_RANK") == str(rank):
                return process
        except psutil.Error:
            continue
    return None


def kill_after_first_checkpoint(checkpoint_dir: Path, killed: list) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and not (checkpoint_dir / "last" / "checkpoint").exists():
        time.sleep(0.05)
    victim = rank_process(1)
    if victim is not None:
        victim.send_signal(signal.SIGKILL)
        killed.append(victim.pid)


def test_killed_rank_fails_cleanly_then_resume_matches_an_uninterrupted_run(spark, preprocessed):
    base, _ = preprocessed
    cfg = configured(base, epochs=3, patience=5)
    clean = run(spark, cfg, model_id="uninterrupted")

    checkpoint_dir = Path(cfg.paths.output).resolve() / "checkpoints" / "drill"
    killed: list[int] = []
    killer = threading.Thread(target=kill_after_first_checkpoint, args=(checkpoint_dir, killed))
    killer.start()
    started = time.time()
    with pytest.raises(TrainingError, match="nothing was published"):
        run(spark, cfg, model_id="drill")
    failed_after = time.time() - started
    killer.join()
    assert killed, "rank 1 was never found to kill"
    assert failed_after < 240  # bounded: no hang on the surviving rank
    assert not (Path(cfg.paths.output).resolve() / "models" / "drill").exists()
    assert rank_process(0) is None and rank_process(1) is None  # no orphaned rank

    resumed = run(spark, cfg, model_id="drill", resume=True)
    assert resumed.epochs[0].epoch >= 2  # it continued, it did not start over
    assert resumed.best_valid_ndcg == pytest.approx(clean.best_valid_ndcg, rel=0.02)


def test_nan_on_one_rank_stops_every_rank_and_publishes_nothing(spark, preprocessed):
    base, _ = preprocessed
    cfg = configured(base, inject_nan_step=3, inject_nan_rank=1)
    with pytest.raises(TrainingError) as failure:
        run(spark, cfg, model_id="nan-drill")
    message = str(failure.value)
    assert "rank 0: rank-averaged loss is nan at step 3" in message
    assert "rank 1: rank-averaged loss is nan at step 3" in message
    assert not (Path(cfg.paths.output).resolve() / "models" / "nan-drill").exists()


def test_a_pruned_trial_stops_every_rank_after_the_same_epoch(spark, preprocessed):
    # A finished trial that scored NDCG@20 1.0 at every epoch: any real trial is below its median.
    base, _ = preprocessed
    cfg = configured(base, epochs=3, patience=5)
    history = {"state": "COMPLETE", "value": 1.0, "intermediate": {"1": 1.0, "2": 1.0, "3": 1.0}}
    report = run(spark, cfg, model_id="pruned-drill",
                 pruning={"startup_trials": 1, "warmup_epochs": 0, "trials": [history]})
    assert report.pruned_after == 1 and [e.epoch for e in report.epochs] == [1]
    ranks = report.record["rank_results"]
    assert [r["pruned_after"] for r in ranks] == [1, 1] and ranks[0]["steps"] == ranks[1]["steps"]
    assert ranks[0]["steps"] == report.steps_per_rank > 0
