"""Configuration: layering, validation errors that name the key, and docs that match the defaults."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prismrec._versions import EXPECTED
from prismrec.config import Config, ConfigError, from_dict, load_config, redact

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def test_base_yaml_documents_every_default():
    documented = yaml.safe_load((ROOT / "conf" / "base.yaml").read_text())
    assert documented == Config().to_dict()


def test_every_conf_file_loads():
    for path in sorted((ROOT / "conf").glob("*.yaml")):
        assert isinstance(load_config(path), Config), path


def test_precedence_base_then_file_then_set(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("train:\n  epochs: 7\n  batch_size: 32\n")
    cfg = load_config(conf, ["train.epochs=9"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (9, 32, Config().train.learning_rate)


def test_int_widens_to_float_but_nothing_else_is_coerced():
    assert load_config(None, ["train.learning_rate=1"]).train.learning_rate == 1.0
    with pytest.raises(ConfigError, match=r"'train.epochs'.*'three'.*expected int"):
        load_config(None, ["train.epochs=three"])


def test_unknown_key_names_the_key_and_origin(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch' \(from .*c.yaml\)"):
        load_config(conf)


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError, match="'train.launcher'.*allowed: spark, horovodrun, local"):
        load_config(None, ["train.launcher=mpi"])


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_a_value_yaml_cannot_parse_is_a_config_error_naming_the_key(capsys):
    from prismrec.cli import EXIT_CONFIG, main

    with pytest.raises(ConfigError, match=r"--set source.csv_delimiter='\\t'.*--set 'source.csv_delimiter=\"\\t\"'"):
        load_config(None, ["source.csv_delimiter=\t"])
    assert load_config(None, ['source.csv_delimiter="\\t"']).source.csv_delimiter == "\t"
    # The same through the command line: exit 2 and one line, before any Spark starts.
    assert main(["preprocess", "--set", "preprocess.min_timestamp=[1990"]) == EXIT_CONFIG
    assert "--set preprocess.min_timestamp='[1990': the value is not valid YAML" in capsys.readouterr().err


def test_a_config_file_yaml_cannot_parse_names_the_file(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("source:\n  csv_delimiter: \t\n")
    with pytest.raises(ConfigError, match=r"config file '.*c.yaml' is not valid YAML: .*line 2"):
        load_config(conf)


def test_round_trip_and_hash_are_stable():
    cfg = load_config(None, ["model.num_interests=3"])
    assert from_dict(cfg.to_dict()) == cfg
    assert cfg.config_hash() == from_dict(cfg.to_dict()).config_hash() != Config().config_hash()


def test_constraints_agree_with_the_runtime_pins():
    pins = dict(re.findall(r"^([\w-]+)==([\w.]+)$", (ROOT / "conf" / "constraints.txt").read_text(), re.M))
    for dist, prefix in EXPECTED.items():
        assert pins[dist].startswith(prefix), (dist, pins[dist], prefix)


def test_secrets_are_redacted_in_saved_configs(tmp_path):
    cfg = load_config(None, ["spark.conf={spark.hadoop.fs.s3a.secret.key: hunter2, spark.executor.memory: 8g}"])
    saved = (cfg.save(tmp_path / "c.yaml")).read_text()
    assert "hunter2" not in saved and "***redacted***" in saved and "8g" in saved
    assert cfg.spark.conf["spark.hadoop.fs.s3a.secret.key"] == "hunter2"  # the run itself keeps the value


def test_cloud_keys_and_url_passwords_are_redacted():
    secrets = {"fs.azure.account.key.acct.dfs.core.windows.net": "AZ", "fs.gs.auth.service.account.private.key": "PK",
               "fs.azure.sas.box.acct.blob.core.windows.net": "SAS", "spark.executor.memory": "8g"}
    cfg = load_config(None, [f"spark.conf={secrets}", "tracking.uri=http://alice:pw@host:5000/mlflow"])
    saved = redact(cfg.to_dict())
    assert saved["spark"]["conf"] == {**{key: "***redacted***" for key in list(secrets)[:3]},
                                      "spark.executor.memory": "8g"}
    assert saved["tracking"]["uri"] == "http://alice:***redacted***@host:5000/mlflow"


def test_importing_config_leaves_numpy_pandas_and_pyarrow_out():
    # In a fresh interpreter: this one has imported them for other tests.
    code = ("import sys, prismrec.config; "
            "print([m for m in ('numpy', 'pandas', 'pyarrow', 'pyspark') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("overrides, message", [
    (["score.merge=share", "score.diversity=0.1"],
     r"'score.diversity' has value 0.1 \(from --set score.diversity=0.1 and --set score.merge=share\); "
     r"allowed: 0 with score.merge=share"),
    (["score.interest_prior=0.5", "score.merge=share"], r"'score.interest_prior' has value 0.5 .*set score.merge=max"),
    (["evaluate.compare=[model, als, model]"],
     r"'evaluate.compare' has value \['model', 'als', 'model'\] .*allowed: a non-empty list of distinct"),
    (["evaluate.ks=[20, 0]"], r"'evaluate.ks' has value \[20, 0\] .*allowed: a non-empty list of integers > 0"),
    (["evaluate.als_reg_params=[]"], r"'evaluate.als_reg_params' has value \[\] .*numbers >= 0"),
    (["evaluate.itemknn_neighbours=0"], r"'evaluate.itemknn_neighbours' has value 0 .*allowed: an integer >= 1"),
    (["nightly.keep_models=-1"], r"'nightly.keep_models' has value -1 \(from --set nightly.keep_models=-1\); "
                                 r"allowed: an integer >= 0"),
    (["synthetic.num_items=10"], r"'synthetic.num_categories' has value 60 \(from the defaults and --set "
                                 r"synthetic.num_items=10\); allowed: an integer >= 1 and <= synthetic.num_items"),
    (["run.dt=2026-02-30"], r"'run.dt' has value '2026-02-30' .*YYYY-MM-DD"),
    (["score.exclude_event_types=[view, like]"], r"'score.exclude_event_types' has value \['view', 'like'\]"),
    (["train.epochs=0"], r"'train.epochs' has value 0 .*allowed: an integer >= 1"),
    (["score.retrieval=hnsw"], r"'score.retrieval' has value 'hnsw' .*allowed: auto, exact, ann"),
    (["score.ann_probes=0"], r"'score.ann_probes' has value 0 .*allowed: an integer >= 1"),
    (["score.ann_lists=-1"], r"'score.ann_lists' has value -1 .*allowed: an integer >= 0"),
])
def test_a_value_out_of_range_names_the_key_its_value_its_origin_and_what_is_allowed(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_keys_that_go_together_are_checked_on_the_merged_layers(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("score:\n  diversity: 0.2\n")
    # diversity 0.2 under the share merge would be refused, but the last layer sets it back to 0.
    cfg = load_config(conf, ["score.merge=share", "score.diversity=0"])
    assert (cfg.score.merge, cfg.score.diversity) == ("share", 0.0)
    with pytest.raises(ConfigError, match=r"'score.diversity' has value 0.2 \(from .*c.yaml and --set score.merge"):
        load_config(conf, ["score.merge=share"])


def test_sections_check_themselves_however_they_are_built():
    # No Config that breaks a rule exists, so the stages never check one again.
    with pytest.raises(ConfigError, match="'nightly.keep_models' has value -1"):
        dataclasses.replace(Config().nightly, keep_models=-1)
    with pytest.raises(ConfigError, match="'evaluate.compare' has value"):
        from_dict({**Config().to_dict(), "evaluate": {**Config().to_dict()["evaluate"], "compare": ["als", "als"]}})


BAD_VALUES = {
    "score.diversity": ["score.merge=share", "score.diversity=0.1"],
    "evaluate.compare": ["evaluate.compare=[model, popularity, model]"],
    "nightly.keep_models": ["nightly.keep_models=-1"],
}
COMMANDS = (["train"], ["score"], ["evaluate"], ["preprocess"], ["generate"], ["demo"],
            ["explain", "--user", "1000001"], ["run", "--date", "2026-01-01"])


@pytest.fixture
def no_stage_runs(monkeypatch):
    """Every command fails loudly (exit 1, not 2) should it get past the config to its work."""
    import prismrec.demo
    import prismrec.nightly
    import prismrec.scoring.explain
    import prismrec.stages

    def reached(*args, **kwargs):
        raise AssertionError("the command got past its config to its work")

    for target, name in ((prismrec.stages, "run"), (prismrec.demo, "run"), (prismrec.nightly, "run_night"),
                         (prismrec.scoring.explain, "explain")):
        monkeypatch.setattr(target, name, reached)


@pytest.mark.parametrize("key", BAD_VALUES)
def test_every_command_exits_2_naming_a_bad_key_before_it_starts_work(key, no_stage_runs, tmp_path, capsys):
    from prismrec.cli import EXIT_CONFIG, main

    for command in COMMANDS:
        overrides = [arg for value in [f"paths.output={tmp_path}", *BAD_VALUES[key]] for arg in ("--set", value)]
        assert main([*command, *overrides]) == EXIT_CONFIG, command
        [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("prismrec ")]
        assert line.startswith(f"prismrec {command[0]}: error: config key '{key}' has value "), line


@pytest.mark.parametrize("key", ["source.csv_delimiter", "source.items.csv_delimiter"])
def test_a_delimiter_is_one_character(key):
    with pytest.raises(ConfigError, match=f"'{key}' has value ';;'"):
        load_config(None, [f"{key}=;;"])
    source = load_config(None, [f'{key}="\\t"']).source
    assert (source.csv_delimiter if key == "source.csv_delimiter" else source.items.csv_delimiter) == "\t"


def test_conf_files_layer_in_order_and_a_tune_space_is_replaced_whole(tmp_path):
    mine, tuned = tmp_path / "mine.yaml", tmp_path / "tuned.yaml"
    mine.write_text("train: {epochs: 7, learning_rate: 0.002}\ntune:\n  space:\n"
                    "    train.learning_rate: {type: float, low: 0.001, high: 0.01, log: true}\n")
    tuned.write_text("train: {learning_rate: 0.004}\n")
    cfg = load_config([mine, tuned], ["model.num_interests=3"])
    assert (cfg.train.epochs, cfg.train.learning_rate, cfg.model.num_interests) == (7, 0.004, 3)
    assert cfg.tune.space == {"train.learning_rate": {"type": "float", "low": 0.001, "high": 0.01, "log": True}}


@pytest.mark.parametrize("entry, message", [
    ("{type: int, low: 5, high: 1}", r"tune.space.train.epochs.*low <= high"),
    ("{type: float, low: 0, high: 1, log: true}", r"tune.space.train.epochs.*low > 0 when log"),
    ("{type: categorical, choices: []}", r"tune.space.train.epochs.*non-empty list"),
    ("{type: grid}", r"tune.space.train.epochs.*type: int \| float \| categorical"),
])
def test_a_bad_tune_space_entry_names_its_key(entry, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"tune.space={{train.epochs: {entry}}}"])
