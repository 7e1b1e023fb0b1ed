"""A real Spark standalone cluster on 127.0.0.1 (one Master, two one-core Workers) and spark-submit.

The daemons come from the pip-installed pyspark package, which ships ``bin/spark-class``
and the jars: ``SPARK_HOME`` points at the package directory. Each daemon runs in its own
process group, so killing a Worker's group also ends its executor JVM and Python workers,
and the finaliser leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import pyspark

ROOT = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).parent
NIGHT = "2026-01-14"  # the last day of the tiny synthetic logs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spark_environment() -> dict[str, str]:
    return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_NO_DAEMONIZE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


class StandaloneCluster:
    """Master + Workers started with ``spark-class``; ``submit`` runs ``spark-submit`` against it."""

    def __init__(self, workdir: Path, workers: int = 2):
        self.workdir, self.size = workdir, workers
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.master: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _daemon(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], stdout=log, stderr=log,
                                env=spark_environment(), cwd=self.workdir, start_new_session=True)

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
            return json.loads(response.read())

    def wait_for_workers(self, count: int, timeout_s: float = 120) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                if self.state()["aliveworkers"] == count:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"standalone cluster at {self.url} did not reach {count} alive workers; "
                           f"see the logs in {self.workdir}")

    def start_worker(self) -> subprocess.Popen:
        index = len(self.workers)
        worker = self._daemon(f"worker-{index}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                              "--cores", "1", "--memory", "2g", "--webui-port", str(free_port()),
                              "--work-dir", str(self.workdir / f"work-{index}"), self.url)
        self.workers.append(worker)
        return worker

    def start(self) -> "StandaloneCluster":
        self.master = self._daemon("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                   "--port", str(self.port), "--webui-port", str(self.ui_port))
        for _ in range(self.size):
            self.start_worker()
        self.wait_for_workers(self.size)
        return self

    def kill_worker(self, index: int) -> None:
        """SIGKILL a Worker's process group: the Worker JVM, its executor JVM and their Python workers."""
        os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait()

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            if process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()

    def submit(self, script: str, *args: str, log: Path) -> subprocess.Popen:
        """Start ``spark-submit script args`` against the cluster; stdout and stderr go to ``log``."""
        command = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", self.url,
                   "--conf", "spark.executor.memory=1g", "--conf", "spark.ui.enabled=false",
                   str(ROOT / script), *args]
        handle = open(log, "wb")
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=spark_environment(),
                                cwd=ROOT, start_new_session=True)


def finish(process: subprocess.Popen, timeout_s: float = 600) -> int:
    """Wait for a submitted driver; kill its whole process group when it overruns."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("standalone")
    standalone = StandaloneCluster(workdir)
    try:
        yield standalone.start()
    finally:
        standalone.stop()


@pytest.fixture(scope="session")
def tiny_logs(tmp_path_factory) -> Path:
    """The tiny synthetic logs (conf/test.yaml sizes), generated once: the data folder."""
    from prismrec.stages import run as run_stage
    from prismrec.config import load_config

    data = tmp_path_factory.mktemp("logs")
    run_stage("generate", load_config(ROOT / "conf" / "test.yaml", [f"paths.data={data}"]))
    return data


def nightly_args(data: Path, output: Path, *extra: str) -> list[str]:
    """jobs/nightly.py arguments: tiny sizes, Horovod ranks as Spark tasks on the executors, and two
    epochs, so that a checkpoint exists before training ends (the rank-kill drill needs one)."""
    return ["--date", NIGHT, "--conf", str(ROOT / "conf" / "test.yaml"), "--set", f"paths.data={data}",
            "--set", f"paths.output={output}", "--set", "train.launcher=spark", "--set", "train.num_proc=2",
            "--set", "train.epochs=2", *extra]


def manifest(output: Path, night: str = NIGHT) -> dict:
    return json.loads((output / "runs" / night / "manifest.json").read_text())


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def clean_night(cluster, tiny_logs, tmp_path_factory) -> Path:
    """One nightly run submitted to the cluster: its paths.output."""
    output = tmp_path_factory.mktemp("night") / "output"
    log = output.parent / "submit.log"
    code = finish(cluster.submit("jobs/nightly.py", *nightly_args(tiny_logs, output), log=log))
    assert code == 0, log.read_text()[-5000:]
    return output
