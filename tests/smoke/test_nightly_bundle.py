"""databricks.yml names only entry points, parameters, files and flags that exist in this package."""
from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from prismrec.cli import parser
from prismrec.config import load_config

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]
# What each console script runs: `prismrec-<name>` is `prismrec <command>`.
COMMAND_OF = {"prismrec": None, "prismrec-nightly": "run", "prismrec-preprocess": "preprocess",
              "prismrec-train": "train", "prismrec-score": "score", "prismrec-evaluate": "evaluate"}
# Sample values for the scheduler's dynamic references ({{job.trigger.time.iso_date}} and friends).
DYNAMIC = {"job.trigger.time.iso_date": "2026-01-15", "job.start_time.iso_date": "2026-01-15"}


@pytest.fixture(scope="module")
def bundle() -> dict:
    return yaml.safe_load((ROOT / "databricks.yml").read_text())


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def wheel_tasks(bundle: dict) -> list[tuple[str, dict]]:
    return [(f"{job_name}.{task['task_key']}", task) for job_name, job in bundle["resources"]["jobs"].items()
            for task in job["tasks"]]


def resolve(value: str, bundle: dict) -> str:
    """Substitute ``${var.x}`` with its default, ``${workspace.file_path}`` with the repository root
    (the bundle syncs the repository there) and ``{{...}}`` with a sample value."""
    value = re.sub(r"\$\{var\.(\w+)\}", lambda m: str(bundle["variables"][m.group(1)]["default"]), value)
    value = value.replace("${workspace.file_path}", str(ROOT))
    value = re.sub(r"\{\{\s*([\w.]+)\s*\}\}", lambda m: DYNAMIC[m.group(1)], value)
    assert "${" not in value and "{{" not in value, f"unresolved reference in {value!r}"
    return value


def test_every_task_is_a_wheel_task_on_a_console_script_that_resolves_to_a_callable(bundle, scripts):
    tasks = wheel_tasks(bundle)
    assert {"prismrec_nightly.nightly", "prismrec_stages.preprocess"} <= {name for name, _ in tasks}
    for name, task in tasks:
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == "prismrec", name
        assert wheel["entry_point"] in scripts, f"{name}: {wheel['entry_point']} is not in [project.scripts]"
        module, function = scripts[wheel["entry_point"]].split(":")
        assert callable(getattr(importlib.import_module(module), function)), name
        assert [library["whl"] for library in task["libraries"]] == ["./dist/*.whl"], name


def test_every_tasks_parameters_parse_with_the_cli_and_its_config_loads(bundle):
    for name, task in wheel_tasks(bundle):
        wheel = task["python_wheel_task"]
        command = COMMAND_OF[wheel["entry_point"]]
        args = parser().parse_args([command, *(resolve(p, bundle) for p in wheel["parameters"])])
        assert args.command == command, name
        cfg = load_config(args.conf, args.overrides)
        assert cfg.train.launcher == "spark" and cfg.paths.output.startswith("/dbfs/"), name
        if command == "run":
            assert (args.date, args.lag_days) == ("2026-01-15", 1)


def test_nightly_job_is_scheduled_once_a_day_and_never_runs_twice_at_once(bundle):
    job = bundle["resources"]["jobs"]["prismrec_nightly"]
    cron = job["schedule"]["quartz_cron_expression"].split()
    # Quartz: seconds minutes hours day-of-month month day-of-week [year]; a fixed time, every day.
    assert len(cron) in (6, 7) and all(field.isdigit() for field in cron[:3]) and cron[3:6] == ["*", "*", "?"]
    assert job["schedule"]["timezone_id"] == "UTC" and job["max_concurrent_runs"] == 1


def test_cluster_runs_python_311_spark_35_and_builds_horovod_with_the_makefile_flags(bundle):
    cluster = bundle["resources"]["jobs"]["prismrec_nightly"]["job_clusters"][0]["new_cluster"]
    # 15.4 LTS (ML): Spark 3.5.0 on Python 3.11, the versions pyproject.toml and the pins require.
    assert re.fullmatch(r"15\.4\.x-cpu-ml-scala2\.12", cluster["spark_version"])
    script = cluster["init_scripts"][0]["workspace"]["destination"].replace("${workspace.file_path}/", "")
    text = (ROOT / script).read_text()
    makefile = (ROOT / "Makefile").read_text()
    flags = re.search(r"HOROVOD_FLAGS := (.*?)\n\n", makefile, re.S).group(1).replace("\\\n", " ").split()
    assert flags and all(flag in text for flag in flags), f"{script} must build Horovod with {flags}"
    constraints = dict(line.split("==") for line in (ROOT / "conf" / "constraints.txt").read_text().splitlines()
                       if "==" in line and not line.startswith("#"))
    for package, version in re.findall(r'"([\w-]+)==([\w.]+)"', text):
        assert constraints[package] == version, f"{script} pins {package}=={version}, constraints.txt {package}"
