"""The model artifact: SavedModel encoder, item table, vocabularies, manifest.

Layout of ``models/<model_id>/``::

    encoder/               SavedModel: hist_items int32[B, L] → interest_vectors [B, K, d], interest_weights [B, K]
    item_embeddings.npy    float32 [num_items, d], row = item_idx (row 0 is padding)
    items.parquet          item vocabulary (item_idx, item_id, category_id, count)
    config.yaml            the resolved config
    metrics.json           training metrics
    manifest.json          SHA-256 of every file above, library versions, config hash

Loading verifies every checksum and refuses missing, extra or altered files. Scoring
with ``score.retrieval=ann`` adds ``index/ivf<lists>.faiss`` (:func:`add_file`); a derived
file under ``index/`` that is missing is built again rather than refused. Nothing is pickled.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prismrec._versions import installed_version
from prismrec.config import redact
from prismrec.errors import EXIT_REFUSED, PrismrecError

MANIFEST = "manifest.json"
# Files derived from the others after export (the approximate-retrieval index): listed in the
# manifest like the rest, but one that is missing is not an error, since it is built again.
DERIVED = "index/"
VERSIONED = ("tensorflow-cpu", "keras", "horovod", "pyspark", "petastorm", "pyarrow", "numpy", "faiss-cpu",
             "prismrec")


class ArtifactError(PrismrecError, ValueError):
    """A model artifact is missing, incomplete or altered (exit code 4: nothing is published from it)."""

    exit_code = EXIT_REFUSED


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(root: Path, config_hash: str, extra: dict | None = None) -> dict:
    manifest = {
        "files": {name: sha256_file(root / name) for name in _files(root)},
        "versions": {dist: installed_version(dist) for dist in VERSIONED},
        "config_hash": config_hash,
        **(extra or {}),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def verify(root: Path) -> dict:
    """Check ``root`` against its manifest; return the manifest or raise :class:`ArtifactError`."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise ArtifactError(f"model artifact {root} has no {MANIFEST}; re-export it with `prismrec train`")
    manifest = json.loads((root / MANIFEST).read_text())
    listed, present = set(manifest["files"]), set(_files(root))
    # Derived files are checked when they are opened (verified_file), not here: one that is gone
    # is built again, and one being added may appear between reading the manifest and the folder.
    listed = {name for name in listed if not name.startswith(DERIVED)}
    present = {name for name in present if not name.startswith(DERIVED)}
    for name in sorted(listed - present):
        raise ArtifactError(f"model artifact {root} is missing {name}; re-export it with `prismrec train`")
    for name in sorted(present - listed):
        raise ArtifactError(f"model artifact {root} holds {name}, which its manifest does not list; "
                            f"remove it or re-export the model")
    for name in sorted(listed):
        _check(root, name, manifest["files"][name])
    return manifest


def _check(root: Path, name: str, expected: str) -> None:
    if sha256_file(root / name) != expected:
        raise ArtifactError(_altered(root, name))


def _altered(root: Path, name: str) -> str:
    fix = "delete it: `prismrec score` builds it again" if name.startswith(DERIVED) else \
        "re-export with `prismrec train`"
    return (f"model artifact file {root / name} was altered (SHA-256 differs from the manifest); "
            f"refusing to load it. Fix: {fix}")


def verified_file(root: Path, name: str) -> Path:
    """``root / name`` after checking it against the artifact's manifest (for a file added after
    the artifact was loaded). Raises ArtifactError when the manifest does not list it or its
    SHA-256 differs."""
    return _verified(Path(root), name)[0]


def verified_bytes(root: Path, name: str) -> bytes:
    """The bytes of ``root / name``, read once and checked against the manifest (so the bytes
    used are the bytes checked); raises ArtifactError as :func:`verified_file` does."""
    return _verified(Path(root), name)[1]


def _verified(root: Path, name: str) -> tuple[Path, bytes]:
    listed = json.loads((root / MANIFEST).read_text())["files"]
    if not (root / name).is_file():
        raise ArtifactError(f"model artifact {root} has no {name}; it is built by `prismrec score` "
                            f"(or `prismrec evaluate`) with score.retrieval=ann")
    if name not in listed:
        raise ArtifactError(f"model artifact {root} holds {name}, which its manifest does not list; "
                            f"delete it: `prismrec score` builds it again")
    data = (root / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != listed[name]:
        raise ArtifactError(_altered(root, name))
    return root / name, data


def add_file(root: Path, name: str, write) -> dict:
    """Add the derived file ``name`` (under ``index/``) to a verified artifact: ``write(path)``
    writes it to a temporary file beside the artifact; the manifest is rewritten to list it with
    its SHA-256, then the file is moved into place. Writers of one artifact take turns (a lock
    file beside it, where the file system supports ``flock``), each re-reading the manifest, so
    none loses another's entry, and one that finds the file already added returns. Loading a
    model between the two steps sees a listed derived file that is not there yet, which is not
    an error. Returns the new manifest. Raises ArtifactError when the artifact does not verify."""
    import fcntl

    root = Path(root)
    assert name.startswith(DERIVED), name
    target = root / name
    partial = root.parent / f".{root.name}.{target.name}.partial-{os.getpid()}"
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some FUSE mounts): one writer is the usual case
            pass
        manifest = verify(root)
        if name in manifest["files"] and target.is_file() and sha256_file(target) == manifest["files"][name]:
            return manifest  # another writer added it while this one waited
        staged = root.parent / f".{root.name}.{MANIFEST}.partial-{os.getpid()}"
        try:
            write(partial)
            manifest["files"][name] = sha256_file(partial)
            staged.write_text(json.dumps(manifest, indent=2, sort_keys=True))
            os.replace(staged, root / MANIFEST)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
            staged.unlink(missing_ok=True)
    return manifest


def export(model, spec: dict, metrics: dict) -> Path:
    """Write the artifact for ``model`` to ``spec['model_dir']``, atomically (rank 0 only)."""
    import pyarrow.parquet as pq
    import yaml

    from prismrec.models.towers import export_encoder

    target = Path(spec["model_dir"])
    staging = target.with_name(f".{target.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    export_encoder(model, str(staging / "encoder"))
    np.save(staging / "item_embeddings.npy", model.item_table().numpy().astype(np.float32))
    pq.write_table(pq.read_table(spec["items_path"]), staging / "items.parquet")
    (staging / "config.yaml").write_text(yaml.safe_dump(redact(spec["config"]), sort_keys=False))
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    write_manifest(staging, spec["config_hash"], {"model_id": target.name})
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


@dataclass(frozen=True)
class LoadedModel:
    """A verified artifact: ``encode(hist_items int32[B, L])`` and the item table."""

    root: Path
    encode: object
    item_embeddings: np.ndarray  # float32 [num_items, d]
    items: object  # pandas DataFrame sorted by item_idx
    config: dict
    manifest: dict


def load(root: str | Path, mmap: bool = True) -> LoadedModel:
    """Verify and load an artifact; the item table is memory-mapped read-only by default."""
    import pandas as pd
    import yaml

    from prismrec.models.towers import load_encoder

    root = Path(root)
    manifest = verify(root)
    embeddings = np.load(root / "item_embeddings.npy", mmap_mode="r" if mmap else None)
    items = pd.read_parquet(root / "items.parquet").sort_values("item_idx").reset_index(drop=True)
    config = yaml.safe_load((root / "config.yaml").read_text())
    return LoadedModel(root, load_encoder(str(root / "encoder")), embeddings, items, config, manifest)
