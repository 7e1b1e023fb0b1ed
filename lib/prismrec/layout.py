"""Where every stage reads and writes, derived from ``paths.output`` alone."""
from __future__ import annotations

import json
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
        """A preprocessed table: events, quarantine, items, categories, train_examples, eval_users, histories."""
        return str(self.preprocessed / name)

    @property
    def meta_path(self) -> Path:
        return self.preprocessed / "_meta.json"

    def read_meta(self) -> dict:
        if not self.meta_path.is_file():
            raise FileNotFoundError(
                f"no preprocessed data at {self.preprocessed} (missing {self.meta_path.name}); "
                f"run `prismrec preprocess` with the same paths.output first")
        return json.loads(self.meta_path.read_text())

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def output_table(self, name: str, dt: str) -> Path:
        """A published, dt-partitioned output: recommendations or user_interests."""
        return self.root / name / f"dt={dt}"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


def record_stage(layout: Layout, run_id: str, stage: str, payload: dict) -> Path:
    """Merge one stage's counts and timings into ``reports/<run_id>.json``."""
    layout.reports.mkdir(parents=True, exist_ok=True)
    path = layout.reports / f"{run_id}.json"
    report = json.loads(path.read_text()) if path.is_file() else {"run_id": run_id, "stages": {}}
    report["stages"][stage] = payload
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    return path
