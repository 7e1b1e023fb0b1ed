"""``prismrec explain --user U``: a user's interests and recommendations, with reasons.

Reads the published tables and the model artifact directly (no Spark), so it
answers in seconds for one user.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from prismrec import schema as S
from prismrec.config import Config
from prismrec.errors import EXIT_INPUT, PrismrecError
from prismrec.layout import Layout
from prismrec.ranking.recommend import encode
from prismrec.scoring.stage import model_dir
from prismrec.training import artifact


class UnknownUserError(PrismrecError, LookupError):
    """The user has no published recommendations for the day asked about (exit code 3)."""

    exit_code = EXIT_INPUT


def _rows(path: Path, user_id: str):
    if not path.exists():
        raise FileNotFoundError(f"no published table at {path}; run `prismrec score` first")
    return ds.dataset(str(path), format="parquet").to_table(filter=ds.field(S.USER_ID) == user_id).to_pandas()


NAMED_IN_LABEL = 3  # history items that name an interest


def one_line(name) -> str | None:
    """A display name on one line: a CSV catalogue may quote line breaks into a name (RFC 4180)."""
    return " ".join(name.split()) or None if isinstance(name, str) else None


def item_label(item_id: str, name, unnamed: str = "{}") -> str:
    """``Name (item <id>)`` when the catalogue names the item, else ``unnamed`` with the id filled in."""
    name = one_line(name)
    return f"{name} (item {item_id})" if name else unnamed.format(item_id)


def interest_label(names: list) -> str | None:
    """An interest named by its most recent history items' names (newest first), e.g.
    ``Star Wars (1977), Return of the Jedi (1983), …``; None when none of them has a name."""
    named = [line for line in map(one_line, names) if line]
    if not named:
        return None
    return ", ".join(named[:NAMED_IN_LABEL]) + (", …" if len(named) > NAMED_IN_LABEL else "")


def explain(cfg: Config, user_id: str, dt: str = "") -> str:
    """The explanation of ``user_id``'s recommendations for ``dt`` (default: the last scored day).

    One line per interest (its name from the catalogue's display names of its history
    items where there are any, weight, top categories, recent history items) and one per
    recommendation with the interest it came from. Raises FileNotFoundError when nothing
    is published, UnknownUserError when the user has no recommendations for ``dt``.
    """
    layout = Layout.of(cfg)
    dt = dt or layout.read_meta()["dt"]
    recommendations = _rows(layout.output_table("recommendations", dt), user_id).sort_values(S.RANK)
    interests = _rows(layout.output_table("user_interests", dt), user_id).sort_values(S.INTEREST)
    history = _rows(Path(layout.table("histories")), user_id)
    if recommendations.empty:
        raise UnknownUserError(f"user {user_id!r} has no recommendations for dt={dt}; check the id (user_id column)")
    model = artifact.load(model_dir(cfg, layout))
    items = model.items.set_index(S.ITEM_IDX)
    # Models trained before the catalogue existed have no names: every label is the bare id.
    names = items[S.ITEM_NAME] if S.ITEM_NAME in items else pd.Series(None, index=items.index, dtype=object)
    name_of = dict(zip(items[S.ITEM_ID], names))
    lines = [f"user {user_id} · dt={dt} · model {model.root.name}"]
    members: dict[int, list[int]] = {}
    if not history.empty and history.iloc[0][S.HIST_LEN] > 0:
        hist = np.asarray(history.iloc[0][S.HIST_ITEMS], dtype=np.int32)[None, :]
        assignment = encode(model, hist).assignment[0]
        for idx, k in zip(hist[0], assignment):
            if idx > 0:
                members.setdefault(int(k), []).append(int(idx))
    labels = {}
    for _, row in interests.iterrows():
        k = int(row[S.INTEREST])
        recent = list(dict.fromkeys(members.get(k, [])[::-1]))  # newest first, each item once
        labels[k] = interest_label([names.at[idx] for idx in recent])
        shown = ", ".join(item_label(items.at[idx, S.ITEM_ID], names.at[idx]) for idx in recent[:5]) or "-"
        named = f"{labels[k]} · " if labels[k] else ""
        lines.append(f"  interest {k}: {named}weight {row[S.WEIGHT]:.2f}, categories "
                     f"{', '.join(row[S.TOP_CATEGORIES]) or '-'}; recent history items: {shown}")
    lines.append("  recommendations:")
    for _, rec in recommendations.iterrows():
        if rec[S.FALLBACK]:
            reason = "popular overall (no usable history)"
        else:
            categories = interests.loc[interests[S.INTEREST] == rec[S.INTEREST], S.TOP_CATEGORIES]
            about = labels.get(int(rec[S.INTEREST])) or (", ".join(categories.iloc[0]) if len(categories) else "-")
            reason = f"interest {rec[S.INTEREST]} ({about})"
        shown = item_label(rec[S.ITEM_ID], name_of.get(rec[S.ITEM_ID]), "item {}")
        lines.append(f"    {rec[S.RANK]:>3}. {shown} [category {rec[S.CATEGORY_ID]}] "
                     f"score {rec[S.SCORE]:.3f} ← {reason}")
    return "\n".join(lines)
