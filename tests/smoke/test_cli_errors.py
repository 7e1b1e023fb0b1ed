"""Bad configuration stops with one clear line that names the problem, and a distinct exit code."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.smoke


def prismrec(*args, cwd):
    return subprocess.run([sys.executable, "-m", "prismrec.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def error_lines(done):
    return [line for line in done.stderr.splitlines() if line.startswith("prismrec ")]


def test_unknown_key(tmp_path):
    done = prismrec("preprocess", "--set", "preprocess.max_hist_length=20", cwd=tmp_path)
    assert done.returncode == 2
    [line] = error_lines(done)
    assert "unknown config key 'preprocess.max_hist_length'" in line and "max_hist_len" in line


def test_wrong_type(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("train:\n  batch_size: big\n")
    done = prismrec("train", "--conf", str(conf), cwd=tmp_path)
    assert done.returncode == 2
    [line] = error_lines(done)
    assert "'train.batch_size'" in line and "'big'" in line and "expected int" in line and "bad.yaml" in line


@pytest.mark.parametrize("command, overrides, key, value", [
    (["train"], ["score.merge=share", "score.diversity=0.1"], "score.diversity", "0.1"),
    (["score"], ["evaluate.compare=[model, als, model]"], "evaluate.compare", "['model', 'als', 'model']"),
    (["run", "--date", "2026-01-01"], ["nightly.keep_models=-1"], "nightly.keep_models", "-1"),
    (["evaluate"], ["score.merge=share", "score.diversity=0.1"], "score.diversity", "0.1"),
])
def test_a_bad_value_exits_2_before_spark_or_horovod_start(tmp_path, command, overrides, key, value):
    # -X importtime lists every module the command imported: neither Spark nor Horovod may be among them
    # (how long the refusal takes is measured in docs/benchmarks.md, not here).
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "prismrec.cli", *command,
                           *(arg for item in overrides for arg in ("--set", item))],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = error_lines(done)
    assert f"config key '{key}' has value {value}" in line and "allowed: " in line
    imported = {row.rsplit("|", 1)[-1].strip() for row in done.stderr.splitlines() if row.startswith("import time:")}
    assert not {"pyspark", "horovod", "tensorflow"} & imported
    assert "spark session" not in done.stderr.lower() and "log4j" not in done.stderr


def test_missing_input_path(tmp_path):
    done = prismrec("preprocess", "--set", f"source.path={tmp_path}/no/such/logs.csv", "--set",
                    "source.format=taobao", cwd=tmp_path)
    assert done.returncode == 3
    [line] = error_lines(done)
    assert f"input path '{tmp_path}/no/such/logs.csv'" in line and "source.path" in line


def test_help_lists_the_stages(tmp_path):
    done = prismrec("--help", cwd=tmp_path)
    assert done.returncode == 0
    for stage in ("doctor", "generate", "preprocess", "train", "score", "evaluate", "demo"):
        assert stage in done.stdout


def test_doctor_passes_on_the_pinned_stack(tmp_path):
    done = prismrec("doctor", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "horovod built with TensorFlow and Gloo" in done.stdout and "[FAIL]" not in done.stdout
