"""spark-submit jobs/nightly.py on a standalone cluster: Horovod ranks on the executors, idempotent reruns."""
from __future__ import annotations

import json

import pytest

from prismrec.nightly import STEPS

from .conftest import NIGHT, digests, finish, manifest, nightly_args

pytestmark = pytest.mark.cluster


def test_nightly_runs_every_stage_with_horovod_ranks_on_the_executors(cluster, clean_night):
    night = manifest(clean_night)
    assert night["status"] == "done"
    assert {stage: night["steps"][stage]["status"] for stage in STEPS} == {stage: "done" for stage in STEPS}
    train = night["steps"]["train"]["counts"]
    assert (train["launcher"], train["ranks"], train["epochs_run"]) == ("spark", 2, 2)
    ranks = json.loads((clean_night / "reports" / f"test-{NIGHT}.json").read_text())["stages"]["train"]["rank_results"]
    assert sorted((r["rank"], r["size"]) for r in ranks) == [(0, 2), (1, 2)]
    assert len({r["weights_digest"] for r in ranks}) == 1  # gradients were averaged across the two executors
    # Both Workers launched an executor for the application (its stderr lives in the Worker's work dir).
    for index in range(2):
        assert list((cluster.workdir / f"work-{index}").glob("app-*/*/stderr")), f"worker {index} ran no executor"
    promoted = json.loads((clean_night / "models" / "PROMOTED.json").read_text())
    assert (promoted["model_id"], promoted["dt"]) == (train["model_id"], NIGHT)
    assert night["steps"]["score"]["counts"]["recommendations"] == 300 * 20  # every user, top_n = 20


def test_rerunning_the_same_date_skips_every_step_and_changes_no_published_byte(cluster, clean_night, tiny_logs):
    published = ("recommendations", "user_interests", "models")
    before = {name: digests(clean_night / name) for name in published}
    log = clean_night.parent / "rerun.log"
    assert finish(cluster.submit("jobs/nightly.py", *nightly_args(tiny_logs, clean_night), log=log)) == 0, \
        log.read_text()[-3000:]
    attempt = manifest(clean_night)["attempts"][-1]
    assert (attempt["ran"], attempt["skipped"]) == ([], list(STEPS))
    assert {name: digests(clean_night / name) for name in published} == before
    assert [p.name for p in (clean_night / "recommendations").iterdir()] == [f"dt={NIGHT}"]
    assert not list(clean_night.rglob("*.retired")) and not list(clean_night.rglob(".*.staging-*"))
