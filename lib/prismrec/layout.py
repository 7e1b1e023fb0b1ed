"""Where every stage reads and writes, derived from ``paths.output`` alone."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from prismrec.config import Config


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def of(cls, cfg: Config) -> "Layout":
        return cls(Path(cfg.paths.output).resolve())

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed"

    def table(self, name: str) -> str:
        """A preprocessed table: events, quarantine, items, categories, train_sequences, eval_users, histories."""
        return str(self.preprocessed / name)

    def has_rows(self, name: str) -> bool:
        """Whether preprocessed table ``name`` holds any Parquet file (Spark writes none for no rows)."""
        return any(Path(self.table(name)).rglob("*.parquet"))

    @property
    def refused_quarantine(self) -> Path:
        """``refused/quarantine``: the quarantine of the last preprocess run refused for bad input."""
        return self.root / "refused" / "quarantine"

    @property
    def meta_path(self) -> Path:
        return self.preprocessed / "_meta.json"

    def read_meta(self) -> dict:
        if not self.meta_path.is_file():
            raise FileNotFoundError(
                f"no preprocessed data at {self.preprocessed} (missing {self.meta_path.name}); "
                f"run `prismrec preprocess` with the same paths.output first")
        return json.loads(self.meta_path.read_text())

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model_dir(self, model_id: str) -> Path:
        return self.models / model_id

    @property
    def latest_model(self) -> Path:
        """``models/LATEST``: the id of the model the last train stage wrote."""
        return self.models / "LATEST"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def night_dir(self, dt: str) -> Path:
        """``runs/<dt>``: the nightly run's manifest, resolved config and lock for one date."""
        return self.runs / dt

    def output_table(self, name: str, dt: str) -> Path:
        """A published, dt-partitioned output: recommendations or user_interests."""
        return self.root / name / f"dt={dt}"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(partial, path)


def record_stage(layout: Layout, run_id: str, stage: str, payload: dict) -> Path:
    """Merge one stage's counts and timings into ``reports/<run_id>.json``."""
    path = layout.reports / f"{run_id}.json"
    report = json.loads(path.read_text()) if path.is_file() else {"run_id": run_id, "stages": {}}
    report["stages"][stage] = payload
    write_json(path, report)
    return path
