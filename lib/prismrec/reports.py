"""What each stage returns: a frozen report with named fields and a one-line ``summary()``.

Each report also keeps ``record``, the stage's JSON report exactly as written to
``<paths.output>/reports/<run_id>.json`` (or, for evaluate, ``reports/<run_id>/evaluation.json``);
the named fields are what the CLI, the demo and the nightly run read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GenerateReport:
    """The synthetic logs written: ``files`` maps csv, parquet, truth_user_interests, truth_items to paths."""

    files: dict[str, str]

    @property
    def folder(self) -> str:
        return str(Path(self.files["csv"]).parent)

    def summary(self) -> str:
        return f"synthetic logs written to {self.folder}"


@dataclass(frozen=True)
class RecordCounts:
    """Every input record's fate, in records: ``input`` = ``kept`` + Σ ``quarantined`` (by reason)
    + ``duplicates`` + Σ ``filtered`` (by rule)."""

    input: int
    kept: int
    quarantined: dict[str, int]
    duplicates: int
    filtered: dict[str, int]

    @classmethod
    def of(cls, counts: dict) -> "RecordCounts":
        return cls(counts["input"], counts["kept"], dict(counts["quarantined"]), counts["duplicates"],
                   dict(counts["filtered"]))

    @property
    def total_quarantined(self) -> int:
        return sum(self.quarantined.values())

    @property
    def total_filtered(self) -> int:
        return sum(self.filtered.values())


@dataclass(frozen=True)
class PreprocessReport:
    """The preprocessed tables' run: ``users`` (scored or evaluated), ``items`` (without the padding
    index), ``training_examples`` (the examples the trainer cuts from the training sequences), ``seconds`` of wall time."""

    run_id: str
    dt: str
    protocol: str
    users: int
    items: int
    counts: RecordCounts
    training_examples: int
    seconds: float
    record: dict = field(repr=False)

    @classmethod
    def of(cls, record: dict) -> "PreprocessReport":
        return cls(record["run_id"], record["dt"], record["protocol"], record["users"], record["num_items"] - 1,
                   RecordCounts.of(record["counts"]), record["train_sequences"]["examples"], record["seconds"], record)

    def summary(self) -> str:
        counts = self.counts
        return (f"{counts.input} input records: {counts.kept} kept, {counts.total_quarantined} quarantined, "
                f"{counts.duplicates} duplicates, {counts.total_filtered} filtered; {self.users} users, "
                f"{self.items} items, {self.training_examples} training examples in {self.seconds:.1f}s")


@dataclass(frozen=True)
class Epoch:
    """One training epoch's rank-averaged figures: ``loss``, validation NDCG@50 and Recall@50
    (model selection), validation NDCG@20 (tuning; each NaN without validation users) and
    ``examples_per_second`` over all ranks."""

    epoch: int
    loss: float
    valid_ndcg: float
    valid_recall: float
    examples_per_second: float
    valid_ndcg_at_20: float = float("nan")

    @classmethod
    def of(cls, values: dict) -> "Epoch":
        return cls(values["epoch"], values["loss"], values["valid_ndcg@50"], values["valid_recall@50"],
                   values["examples_per_second"], values.get("valid_ndcg@20", float("nan")))


@dataclass(frozen=True)
class TrainReport:
    """A finished training: the exported artifact's ``model_dir``, how it ran, and its epochs."""

    model_dir: str
    launcher: str
    ranks: int
    steps_per_rank: int
    final_loss: float | None
    best_valid_ndcg: float
    epochs: tuple[Epoch, ...]
    seconds: float
    record: dict = field(repr=False)
    pruned_after: int | None = None  # the epoch a tuning pruner stopped training at
    tracking_run_id: str | None = None  # the MLflow run, None when untracked

    @classmethod
    def of(cls, record: dict) -> "TrainReport":
        return cls(record["model_dir"], record["launcher"], record["ranks"], record["steps_per_rank"],
                   record["final_loss"], record["best_valid_ndcg@50"],
                   tuple(Epoch.of(values) for values in record["epochs"]), record["seconds"], record,
                   record.get("pruned_after"), record.get("tracking_run_id"))

    @property
    def best_epoch(self) -> Epoch | None:
        return max(self.epochs, key=lambda epoch: epoch.valid_ndcg, default=None)

    def summary(self) -> str:
        return (f"{len(self.epochs)} epochs on {self.ranks} rank(s) ({self.launcher}), final loss "
                f"{self.final_loss:.4f}, best valid ndcg@50 {self.best_valid_ndcg:.4f} in {self.seconds:.1f}s; "
                f"artifact {self.model_dir}")


@dataclass(frozen=True)
class ScoreReport:
    """The published ``dt`` partitions of the two output tables, and the users scored."""

    dt: str
    model_dir: str
    users: int
    recommendations: str
    user_interests: str
    seconds: float
    record: dict = field(repr=False)

    @classmethod
    def of(cls, record: dict) -> "ScoreReport":
        return cls(record["dt"], record["model_dir"], record["users"], record["recommendations"],
                   record["user_interests"], record["seconds"], record)

    def summary(self) -> str:
        retrieval = self.record.get("retrieval", "exact")
        if "ann_recall" in self.record:
            retrieval += (f", the index's Recall@N against exact {self.record['ann_recall']:.3f} on "
                          f"{self.record['ann_recall_users']} users")
            if self.record.get("ann_reranked_share"):
                retrieval += f", {self.record['ann_reranked_share']:.0%} ranked again exactly"
        return f"{self.users} users scored ({retrieval}) in {self.seconds:.1f}s → {self.recommendations}"


@dataclass(frozen=True)
class EvaluateReport:
    """Every compared system on one split's users: ``metrics[system]["ndcg@20"]`` and the like,
    ``interest_quality[system]``, and the written report's ``files`` (json, markdown)."""

    run_id: str
    protocol: str
    split: str
    users: int
    ks: tuple[int, ...]
    systems: tuple[str, ...]
    metrics: dict[str, dict[str, float]]
    interest_quality: dict[str, dict]
    output: str
    files: dict[str, str]
    seconds: float
    record: dict = field(repr=False)

    @classmethod
    def of(cls, record: dict) -> "EvaluateReport":
        return cls(record["run_id"], record["protocol"], record["split"], record["users"], tuple(record["ks"]),
                   tuple(record["systems"]), record["metrics"], record["interest_quality"], record["output"],
                   record["report"], record["seconds"], record)

    @property
    def run_report(self) -> str:
        """The stage's entry in the run report, ``<output>/reports/<run_id>.json``."""
        return str(Path(self.output) / "reports" / f"{self.run_id}.json")

    def summary(self) -> str:
        k = self.ks[-1]
        best = max(self.metrics, key=lambda name: self.metrics[name][f"recall@{k}"])
        return (f"{self.users} {self.split} users ({self.protocol} protocol), {len(self.metrics)} systems in "
                f"{self.seconds:.1f}s; best recall@{k}: {best} {self.metrics[best][f'recall@{k}']:.4f}; "
                f"report {self.files['markdown']}")
