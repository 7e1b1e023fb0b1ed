"""The evaluation report: JSON for machines, Markdown (with the PNG figures) for people."""
from __future__ import annotations

import json
from pathlib import Path

from prismrec.evaluation.interests import MIN_EVIDENCE, PURITY_TOP_N

JSON_NAME = "evaluation.json"
MARKDOWN_NAME = "evaluation.md"
# What another protocol's evaluation contributes to this report.
SUMMARY_KEYS = ("protocol", "run_id", "split", "users", "metrics", "not_applicable", "interest_quality", "output")
QUALITY = (("distinctness", "distinctness (mean pairwise cosine, lower = more distinct)"),
           ("weight_entropy", "weight entropy (bits)"), ("category_purity", "category purity"),
           ("recovery_share", "planted interests recovered"),
           ("evidenced_recovery_share", f"… of those with ≥ {MIN_EVIDENCE} input items"),
           ("assignment_nmi", "NMI(assignment, topic)"))
PLOTS = (("curves", "Recall and NDCG against K"), ("heatmap", "Interests × categories (featured model)"),
         ("projection", "Item embeddings (featured model)"), ("distinctness", "Interest distinctness"))


def metric_names(ks: list[int]) -> list[str]:
    top = max(ks)
    return ([f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]
            + [f"hit_rate@{top}", f"precision@{top}", "mrr", f"coverage@{top}", f"novelty@{top}",
               f"category_diversity@{top}"])


def _cell(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def by_protocol(result: dict) -> dict[str, dict]:
    """This evaluation and the other protocols', keyed by protocol (this one first)."""
    return {result["protocol"]: {key: result[key] for key in SUMMARY_KEYS}, **result["other_protocols"]}


def comparison_table(result: dict) -> list[str]:
    """Systems × protocols × metrics, one row per (system, protocol); n/a rows say why below the table."""
    names = metric_names(result["ks"])
    protocols = by_protocol(result)
    lines = ["| system | protocol | users | " + " | ".join(names) + " |",
             "|---|---|---:" + "|---:" * len(names) + "|"]
    reasons = {}
    for system in result["systems"]:
        for protocol, summary in protocols.items():
            if system in summary["metrics"]:
                values = summary["metrics"][system]
                lines.append(f"| {system} | {protocol} | {summary['users']} | "
                             + " | ".join(_cell(values.get(n)) for n in names) + " |")
            elif system in summary["not_applicable"]:
                reasons[system] = summary["not_applicable"][system]
                lines.append(f"| {system} | {protocol} | – | " + " | ".join("n/a" for _ in names) + " |")
    lines.append("")
    lines += [f"- n/a for `{system}` under `users`: {reason}." for system, reason in reasons.items()]
    return lines


def quality_table(result: dict) -> list[str]:
    lines = ["| system | protocol | " + " | ".join(title for _, title in QUALITY) + " |",
             "|---|---" + "|---:" * len(QUALITY) + "|"]
    protocols = by_protocol(result)
    for system in result["systems"]:
        for protocol, summary in protocols.items():
            values = summary["interest_quality"].get(system)
            if values:
                lines.append(f"| {system} | {protocol} | " + " | ".join(_cell(values.get(k)) for k, _ in QUALITY) + " |")
    return lines


def markdown(result: dict) -> str:
    protocols = ", ".join(f"`{p}` ({s['users']} users, {s['output']})" for p, s in by_protocol(result).items())
    lines = [
        f"# prismrec evaluation: {result['run_id']}",
        "",
        f"Split `{result['split']}`; protocols {protocols}. `users`: held-out users, the first 80% of each "
        f"history is the input and the rest are the targets; `time`: every user, events after the cutoff are "
        f"the targets; `last`: every user, the last shares of each history are the valid and test targets. "
        f"Every system ranks the same users, seen items excluded, top {max(result['ks'])}.",
        f"Featured model (plots, examples): `{result['model_dir'] or '-'}`.",
        "",
        "## Systems × protocols × metrics",
        "",
        *comparison_table(result),
        "- coverage@K: share of the catalogue in anyone's top-K; novelty@K: mean −log2 p(item) of the "
        "top-K (p = the item's share of all interactions).",
    ]
    approximate = {name: r for name, r in result.get("retrieval", {}).items() if r["mode"] == "ann"}
    if approximate:
        others = len(result["retrieval"]) > len(approximate)
        lines.append("- Ranked with approximate retrieval (score.retrieval): " + "; ".join(
            f"{name}: {r['probes']} probes of {r['lists']} lists" for name, r in approximate.items())
            + ("; the other models exactly." if others else "."))
    if result.get("als"):
        chosen = result["als"]["chosen"]
        grid = "; ".join(f"rank {g['rank']}, regParam {g['reg_param']}: {_cell(list(g.values())[-1])}"
                         for g in result["als"]["grid"])
        lines.append(f"- ALS grid, validation NDCG@{max(result['ks'])} ({grid}); chosen rank {chosen['rank']}, "
                     f"regParam {chosen['reg_param']}.")
    lines += ["", "## Interest quality", "",
              f"Per user, averaged: each interest's top {PURITY_TOP_N} retrieved items give its category purity and its "
              "topic mix; interests are matched one-to-one to the user's planted topics (greedy on overlap) and a "
              "planted topic counts as recovered when its interest's items are mostly (> 1/2) from it. Share recovered "
              f"over every planted topic, and over those the user's input shows at least {MIN_EVIDENCE} times "
              "(a topic with one or two input events is noise to any model).",
              "", *quality_table(result), ""]
    lines += ["## Figures", ""]
    for name, title in PLOTS:
        if name in result.get("plots", {}):
            lines += [f"### {title}", "", f"![{title}]({Path(result['plots'][name]).name})", ""]
    if result.get("examples"):
        lines += ["## Example users", ""]
        for example in result["examples"]:
            planted = ", ".join(f"topic {t['topic']} ({t['weight']:.2f})" for t in example["planted_topics"])
            lines += [f"### user {example['user_id']}", "", f"Planted topics: {planted or '-'}.", "",
                      "```", example["explanation"], "```", ""]
    return "\n".join(lines) + "\n"


def write(result: dict, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / JSON_NAME, "markdown": directory / MARKDOWN_NAME}
    paths["json"].write_text(json.dumps(result, indent=2, sort_keys=True))
    paths["markdown"].write_text(markdown(result))
    return paths
