"""The report's figures as PNG files (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

DPI = 110


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def metric_curves(curves: dict[str, dict[str, dict[str, float]]], systems: list[str], ks: list[int],
                  path: Path) -> Path:
    """Recall@K and NDCG@K against K, one panel per (metric, protocol), one line per system.

    curves: {protocol: {system: {"recall@k": value, "ndcg@k": value, ...}}}; ``systems`` gives the
    order (and colour) of the lines, the first drawn thicker.
    """
    protocols = list(curves)
    figure, axes = plt.subplots(2, len(protocols), figsize=(6.2 * len(protocols), 8.0), squeeze=False)
    names = list(systems)
    colours = dict(zip(names, plt.cm.tab10(np.arange(len(names)) % 10)))
    for column, protocol in enumerate(protocols):
        for row, metric in enumerate(("recall", "ndcg")):
            axis = axes[row, column]
            for system in (name for name in names if name in curves[protocol]):
                values = curves[protocol][system]
                axis.plot(ks, [values[f"{metric}@{k}"] for k in ks], marker="o", label=system,
                          color=colours[system], linewidth=2.5 if system == names[0] else 1.5)
            axis.set_xscale("log")
            axis.set_xticks(ks, [str(k) for k in ks])
            axis.set_xlabel("K (log scale)")
            axis.set_ylabel(f"{'Recall' if metric == 'recall' else 'NDCG'}@K")
            axis.set_title(f"{'Recall' if metric == 'recall' else 'NDCG'}@K, protocol '{protocol}'")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=9)
    return _save(figure, path)


def interest_heatmap(shares: np.ndarray, row_labels: list[str], column_labels: list[str],
                     column_groups: list[str], path: Path) -> Path:
    """Share of each interest's retrieved items per category: rows are (user, interest), columns categories.

    ``column_groups`` (e.g. each category's planted topic) are drawn as separators and labels on top.
    """
    height = 2.0 + 0.3 * len(row_labels)
    figure, axis = plt.subplots(figsize=(min(15.0, max(8.0, 0.3 * len(column_labels) + 4.0)), height))
    image = axis.imshow(shares, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(float(shares.max()), 1e-9))
    axis.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    axis.set_xticks(range(len(column_labels)), column_labels, rotation=90, fontsize=7)
    axis.set_xlabel("category (grouped by planted topic)" if any(column_groups) else "category")
    starts = [i for i, group in enumerate(column_groups) if i == 0 or group != column_groups[i - 1]]
    for start, end in zip(starts, starts[1:] + [len(column_groups)]):
        if start:
            axis.axvline(start - 0.5, color="white", linewidth=1.2)
        if column_groups[start]:
            axis.text((start + end - 1) / 2, -0.8, column_groups[start], ha="center", va="bottom", fontsize=8)
    users = [label.split(" · ")[0] for label in row_labels]
    for row in range(1, len(users)):
        if users[row] != users[row - 1]:
            axis.axhline(row - 0.5, color="white", linewidth=2.0)
    figure.colorbar(image, ax=axis, label="share of the interest's top items", fraction=0.03, pad=0.01)
    axis.set_title("Interests × categories: where each interest's retrieved items lie", pad=18)
    return _save(figure, path)


def item_projection(coordinates: np.ndarray, labels: np.ndarray, legend_title: str, path: Path) -> Path:
    """Scatter of the item embeddings' first two principal components, coloured by ``labels``."""
    figure, axis = plt.subplots(figsize=(8.5, 7.0))
    values = sorted(set(labels.tolist()))
    palette = plt.cm.tab10 if len(values) <= 10 else plt.cm.tab20
    colours = palette(np.arange(len(values)) % palette.N)
    for colour, value in zip(colours, values):
        chosen = labels == value
        axis.scatter(coordinates[chosen, 0], coordinates[chosen, 1], s=7, alpha=0.7, color=colour, label=str(value))
    axis.set_xlabel("principal component 1")
    axis.set_ylabel("principal component 2")
    axis.set_title("Item embeddings, first two principal components")
    axis.legend(title=legend_title, fontsize=8, markerscale=2.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(figure, path)


def distinctness(histograms: dict[str, list[int]], bins: int, path: Path) -> Path:
    """Histogram of each user's mean pairwise cosine between their interests, one bar set per system."""
    figure, axis = plt.subplots(figsize=(8.5, 5.0))
    edges = np.linspace(-1.0, 1.0, bins + 1)
    for system, counts in histograms.items():
        total = max(sum(counts), 1)
        axis.stairs(np.asarray(counts) / total, edges, label=f"{system} ({total} users)", linewidth=2)
    axis.set_xlabel("mean pairwise cosine between a user's interest vectors (lower = more distinct)")
    axis.set_ylabel("share of users")
    axis.set_title("Interest distinctness")
    axis.grid(alpha=0.3)
    if histograms:
        axis.legend()
    else:
        axis.text(0.0, 0.5, "no model with more than one interest", ha="center")
    return _save(figure, path)
