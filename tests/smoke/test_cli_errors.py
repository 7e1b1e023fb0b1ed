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
