"""Configuration: layering, validation errors that name the key, and docs that match the defaults."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from prismrec._versions import EXPECTED
from prismrec.config import Config, ConfigError, from_dict, load_config

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
