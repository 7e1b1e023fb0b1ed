"""``prismrec explain --user U``: a user's interests and recommendations, with reasons.

Reads the published tables and the model artifact directly (no Spark), so it
answers in seconds for one user.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

from prismrec import schema as S
from prismrec.config import Config
from prismrec.layout import Layout
from prismrec.scoring.recommend import encode
from prismrec.scoring.stage import model_dir
from prismrec.training import artifact


class UnknownUserError(LookupError):
    """The user has no published recommendations for the day asked about."""


def _rows(path: Path, user_id: str):
    if not path.exists():
        raise FileNotFoundError(f"no published table at {path}; run `prismrec score` first")
    return ds.dataset(str(path), format="parquet").to_table(filter=ds.field(S.USER_ID) == user_id).to_pandas()


def explain(cfg: Config, user_id: str, dt: str = "") -> str:
    """The explanation of ``user_id``'s recommendations for ``dt`` (default: the last scored day)."""
    layout = Layout.of(cfg)
    dt = dt or layout.read_meta()["dt"]
    recs = _rows(layout.output_table("recommendations", dt), user_id).sort_values(S.RANK)
    interests = _rows(layout.output_table("user_interests", dt), user_id).sort_values(S.INTEREST)
    history = _rows(Path(layout.table("histories")), user_id)
    if recs.empty:
        raise UnknownUserError(f"user {user_id!r} has no recommendations for dt={dt}; check the id (user_id column)")
    model = artifact.load(model_dir(cfg, layout))
    items = model.items.set_index(S.ITEM_IDX)
    lines = [f"user {user_id} · dt={dt} · model {model.root.name}"]
    members: dict[int, list[str]] = {}
    if not history.empty and history.iloc[0][S.HIST_LEN] > 0:
        hist = np.asarray(history.iloc[0][S.HIST_ITEMS], dtype=np.int32)[None, :]
        assignment = encode(model, hist).assignment[0]
        for idx, k in zip(hist[0], assignment):
            if idx > 0:
                members.setdefault(int(k), []).append(str(items.at[int(idx), S.ITEM_ID]))
    for _, row in interests.iterrows():
        k = int(row[S.INTEREST])
        shown = ", ".join(members.get(k, [])[-5:][::-1]) or "-"
        lines.append(f"  interest {k}: weight {row[S.WEIGHT]:.2f}, categories {', '.join(row[S.TOP_CATEGORIES]) or '-'}"
                     f"; recent history items: {shown}")
    lines.append("  recommendations:")
    for _, rec in recs.iterrows():
        if rec[S.FALLBACK]:
            reason = "popular overall (no usable history)"
        else:
            labels = interests.loc[interests[S.INTEREST] == rec[S.INTEREST], S.TOP_CATEGORIES]
            cats = ", ".join(labels.iloc[0]) if len(labels) else "-"
            reason = f"interest {rec[S.INTEREST]} ({cats})"
        lines.append(f"    {rec[S.RANK]:>3}. item {rec[S.ITEM_ID]} [category {rec[S.CATEGORY_ID]}] "
                     f"score {rec[S.SCORE]:.3f} ← {reason}")
    return "\n".join(lines)
