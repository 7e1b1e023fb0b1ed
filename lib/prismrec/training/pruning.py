"""Stopping a tuning trial's training early: Optuna's median pruner, run inside rank 0.

A rank cannot reach the study's storage (an SQLite file on the driver's disk), so
``prismrec tune`` hands the trial's training the study's finished trials instead:
their per-epoch validation NDCG@20. Rank 0 rebuilds them in an in-memory study with the
same pruner, reports each epoch's value to a fresh trial there, and asks Optuna whether to
stop; the ranks then stop together (:func:`prismrec.training.loop.train_rank`). The driver
afterwards records the same values in the real trial and marks it pruned. Method: the median stopping rule (Golovin et al.,
"Google Vizier", KDD 2017), as ``optuna.pruners.MedianPruner``.
"""
from __future__ import annotations

import math
from typing import Callable


def median_pruner(startup_trials: int, warmup_epochs: int):
    """``optuna.pruners.MedianPruner``: a trial is stopped when its value at an epoch is below the
    median of the completed (not pruned) trials' values at that epoch, once ``startup_trials`` trials
    have completed and from epoch ``warmup_epochs`` on."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)


def pruning_settings(study, startup_trials: int, warmup_epochs: int) -> dict:
    """What a trial's ranks need to prune it (JSON): the pruner's settings and, for every finished
    (complete or pruned) trial of ``study``, its state, value and per-epoch values."""
    from optuna.trial import TrialState

    finished = [trial for trial in study.get_trials(deepcopy=False)
                if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    return {"startup_trials": startup_trials, "warmup_epochs": warmup_epochs,
            "trials": [{"state": trial.state.name, "value": trial.value,
                        "intermediate": {str(step): value for step, value in trial.intermediate_values.items()}}
                       for trial in finished]}


def epoch_pruner(settings: dict) -> Callable[[int, float], bool]:
    """``prune(epoch, valid_ndcg_at_20) -> bool`` for one trial, from :func:`pruning_settings` output.

    Epochs count from 1. A non-finite value (no validation users) never prunes."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                pruner=median_pruner(settings["startup_trials"], settings["warmup_epochs"]))
    study.add_trials([optuna.trial.create_trial(
        state=TrialState[past["state"]], value=past["value"] if past["state"] == "COMPLETE" else None,
        intermediate_values={int(step): value for step, value in past["intermediate"].items()})
        for past in settings["trials"]])
    trial = study.ask()

    def prune(epoch: int, value: float) -> bool:
        if not math.isfinite(value):
            return False
        trial.report(value, epoch)
        return bool(trial.should_prune())

    return prune
