"""The error family: every anticipated failure carries its exit code, and the CLI exits with it."""
from __future__ import annotations

import importlib
import pickle

import pytest

from prismrec import cli
from prismrec.config import ConfigError, InvalidValue, ScoreSection
from prismrec.errors import EXIT_BUSY, EXIT_CONFIG, EXIT_FAILURE, EXIT_INPUT, EXIT_REFUSED, PrismrecError, exit_code
from prismrec.nightly import NightBusy, StepFailed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("module, name, code, builtin", [
    ("prismrec.config", "ConfigError", EXIT_CONFIG, ValueError),
    ("prismrec.preprocess.sources", "InputError", EXIT_INPUT, ValueError),
    ("prismrec.preprocess.stage", "InputError", EXIT_INPUT, ValueError),  # re-exported where the stage raises it
    ("prismrec.scoring.explain", "UnknownUserError", EXIT_INPUT, LookupError),
    ("prismrec.scoring.publish", "PublishError", EXIT_REFUSED, RuntimeError),
    ("prismrec.training.artifact", "ArtifactError", EXIT_REFUSED, ValueError),
    ("prismrec.training.launch", "TrainingError", EXIT_REFUSED, RuntimeError),
    ("prismrec.nightly", "QualityGateError", EXIT_REFUSED, RuntimeError),
    ("prismrec.nightly", "NightBusy", EXIT_BUSY, RuntimeError),
])
def test_each_error_carries_its_exit_code_and_keeps_its_builtin_base(module, name, code, builtin):
    error = getattr(importlib.import_module(module), name)("what went wrong")
    assert isinstance(error, PrismrecError) and isinstance(error, builtin)  # old `except ValueError:` still work
    assert error.exit_code == exit_code(error) == code


def test_outside_the_family_a_missing_file_is_bad_input_and_anything_else_unexpected():
    assert exit_code(FileNotFoundError("logs.csv")) == EXIT_INPUT
    assert exit_code(KeyError("user_id")) == EXIT_FAILURE
    assert exit_code(PrismrecError("no code of its own")) == EXIT_FAILURE


@pytest.mark.parametrize("cause, code", [
    (ConfigError("bad key"), EXIT_CONFIG),
    (FileNotFoundError("missing"), EXIT_INPUT),
    (RuntimeError("boom"), EXIT_FAILURE),
])
def test_a_failed_nightly_stage_exits_with_its_cause_code(cause, code):
    failed = StepFailed("train", "2026-01-01", cause)
    assert failed.exit_code == exit_code(failed) == code
    assert exit_code(StepFailed("score", "2026-01-01", failed)) == code  # however deep it is wrapped


@pytest.mark.parametrize("raised, code", [
    (NightBusy("locked"), EXIT_BUSY),
    (StepFailed("score", "2026-01-01", FileNotFoundError("no preprocessed data")), EXIT_INPUT),
    (ZeroDivisionError("bug"), EXIT_FAILURE),
])
def test_the_cli_exits_with_the_code_the_error_carries(monkeypatch, capsys, raised, code):
    import prismrec.stages

    def stage(name, cfg, spark=None, **options):
        raise raised

    monkeypatch.setattr(prismrec.stages, "run", stage)
    assert cli.main(["score"]) == code
    assert capsys.readouterr().err.splitlines()[-1].startswith("prismrec score: error: ")


def test_a_config_error_from_a_section_check_survives_pickling():
    with pytest.raises(InvalidValue) as raised:
        ScoreSection(top_n=0)
    again = pickle.loads(pickle.dumps(raised.value))
    assert type(again) is InvalidValue and str(again) == str(raised.value)
    assert again.exit_code == EXIT_CONFIG and again.values == {"score.top_n": 0}
