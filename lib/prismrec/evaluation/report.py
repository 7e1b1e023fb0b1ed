"""The evaluation report: JSON for machines, Markdown for people."""
from __future__ import annotations

import json
from pathlib import Path


def markdown(result: dict) -> str:
    ks = result["ks"]
    names = [f"{metric}@{k}" for metric in ("recall", "ndcg", "hit_rate", "precision", "category_diversity")
             for k in ks] + ["mrr"]
    lines = [
        f"# prismrec evaluation: {result['run_id']}",
        "",
        f"Protocol `{result['protocol']}`, split `{result['split']}`: {result['users']} held-out users "
        f"(first part of each history is input, the rest are targets).",
        f"Model: `{result['model_dir']}`",
        "",
        "| system | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for system, values in result["metrics"].items():
        lines.append(f"| {system} | " + " | ".join(f"{values[n]:.4f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def write(result: dict, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "evaluation.json", "markdown": directory / "evaluation.md"}
    paths["json"].write_text(json.dumps(result, indent=2, sort_keys=True))
    paths["markdown"].write_text(markdown(result))
    return paths
