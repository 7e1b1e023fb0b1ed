"""Typed, frozen configuration: YAML layering and ``--set a.b=c`` overrides.

Precedence, lowest first: the defaults below (documented, key by key, in
``conf/base.yaml``, which a test keeps equal to them) → a named file → ``--set``.
Unknown keys and wrong types raise :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from prismrec.logs.synthetic import SyntheticSpec
from prismrec.schema import EVENT_TYPES as S_EVENT_TYPES

class _Loader(yaml.SafeLoader):
    """YAML without implicit dates: ``dt: 2026-01-14`` stays the string the config expects."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or out of range."""


DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "click": 1.0, "cart": 2.0, "fav": 2.0, "buy": 3.0, "rate": 1.0}


@dataclass(frozen=True)
class RunSection:
    name: str = "local"
    seed: int = 42
    dt: str = ""  # output partition date YYYY-MM-DD; empty means the last day of the logs


@dataclass(frozen=True)
class PathsSection:
    data: str = "./data"
    output: str = "./output"


@dataclass(frozen=True)
class SparkSection:
    master: str = "local[2]"
    app_name: str = "prismrec"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    conf: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MappingSection:
    user: str = "user_id"
    item: str = "item_id"
    category: str = ""  # empty: every item's category is "unknown"
    event_type: str = ""  # empty: every row is default_event_type
    timestamp: str = "timestamp"
    timestamp_format: str = "unix_s"  # unix_s | unix_ms | a Spark datetime pattern
    event_types: dict = field(default_factory=dict)  # raw value → canonical event type
    default_event_type: str = "view"


@dataclass(frozen=True)
class CatalogueMappingSection:
    item: str = "item_id"
    category: str = "category"  # empty: the catalogue holds no category
    name: str = "name"  # empty: the catalogue holds no display name


@dataclass(frozen=True)
class CatalogueSection:
    path: str = ""  # empty: no catalogue (movielens: the folder's movies file)
    format: str = ""  # csv | jsonl | parquet; empty: from the file extension
    csv_delimiter: str = ","
    mapping: CatalogueMappingSection = field(default_factory=CatalogueMappingSection)


@dataclass(frozen=True)
class SourceSection:
    format: str = "synthetic"
    path: str = ""  # empty: <paths.data>/synthetic/UserBehavior.csv
    csv_delimiter: str = ","
    mapping: MappingSection = field(default_factory=MappingSection)
    items: CatalogueSection = field(default_factory=CatalogueSection)


@dataclass(frozen=True)
class PreprocessSection:
    max_bad_fraction: float = 0.05
    min_timestamp: str = "1990-01-01"
    max_id_length: int = 64
    max_events_per_user: int = 5000
    event_weights: dict = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    max_hist_len: int = 50
    min_user_events: int = 5
    min_item_events: int = 2
    protocol: str = "users"
    time_holdout_days: int = 1
    min_hist_len: int = 1
    example_sampling: str = "recent"
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    holdout_fraction: float = 0.2
    valid_share: float = 0.1
    test_share: float = 0.1
    max_examples_per_user: int = 5000
    row_group_rows: int = 4096
    num_files: int = 8


@dataclass(frozen=True)
class ModelSection:
    encoder: str = "self_attentive"
    num_interests: int = 4
    embedding_dim: int = 64
    hidden_dim: int = 64
    routing_iterations: int = 3
    cluster_iterations: int = 5
    diversity_weight: float = 0.0
    seed_mlp_dims: int = 20


@dataclass(frozen=True)
class TrainSection:
    launcher: str = "spark"  # spark | horovodrun | local
    num_proc: int = 2
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 0.001
    num_negatives: int = 256
    temperature: float = 0.1
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    patience: int = 3
    validation_users: int = 2000
    rank_timeout_s: int = 1800
    inject_nan_step: int = -1
    inject_nan_rank: int = 0
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    seed: int = 42
    warm_start: str = ""  # a model directory whose weights initialise training; "" = random init


@dataclass(frozen=True)
class ScoreSection:
    model_id: str = ""  # empty: the model the last train stage wrote
    top_n: int = 50
    merge: str = "max"
    diversity: float = 0.0
    interest_prior: float = 0.0
    exclude_event_types: list = field(default_factory=lambda: list(S_EVENT_TYPES))
    batch_users: int = 512
    arrow_batch_rows: int = 2048


@dataclass(frozen=True)
class EvaluateSection:
    ks: list = field(default_factory=lambda: [20, 50])
    split: str = "test"
    # model = the scored model; popularity | als | itemknn = baselines; any other name = models/<name>
    compare: list = field(default_factory=lambda: ["model", "popularity", "als", "itemknn"])
    other_outputs: list = field(default_factory=list)  # output roots of other protocols, evaluated first
    als_ranks: list = field(default_factory=lambda: [16, 48])
    als_reg_params: list = field(default_factory=lambda: [0.01, 0.1])
    itemknn_neighbours: int = 100


@dataclass(frozen=True)
class NightlySection:
    train_mode: str = "full"  # full | warm (start from the published model's weights)
    max_ndcg_drop: float = 0.05  # refuse to publish below (1 - this) × the published model's valid NDCG@50
    keep_models: int = 7  # nightly model directories kept after a publish (newest dates; 0 keeps all)


@dataclass(frozen=True)
class Config:
    run: RunSection = field(default_factory=RunSection)
    paths: PathsSection = field(default_factory=PathsSection)
    spark: SparkSection = field(default_factory=SparkSection)
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    source: SourceSection = field(default_factory=SourceSection)
    preprocess: PreprocessSection = field(default_factory=PreprocessSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    score: ScoreSection = field(default_factory=ScoreSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    nightly: NightlySection = field(default_factory=NightlySection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        payload = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write the resolved config as YAML next to an output, secrets redacted."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(redact(self.to_dict()), sort_keys=False))
        return path


_SECRET = re.compile(r"token|password|passwd|secret|credential|api[._-]?key|access[._-]?key", re.IGNORECASE)
REDACTED = "***redacted***"


def redact(data):
    """A copy of ``data`` with the value of every key that names a secret replaced (at any depth)."""
    if isinstance(data, dict):
        return {key: REDACTED if isinstance(key, str) and _SECRET.search(key) and not isinstance(value, dict)
                else redact(value) for key, value in data.items()}
    if isinstance(data, list):
        return [redact(item) for item in data]
    return data


_CHOICES = {
    "source.format": ("synthetic", "taobao", "movielens", "csv", "jsonl", "parquet"),
    "source.items.format": ("", "csv", "jsonl", "parquet"),
    "preprocess.protocol": ("users", "time", "last"),
    "preprocess.example_sampling": ("recent", "random"),
    "model.encoder": ("clustered", "self_attentive", "capsule", "mean_pool", "seed_mlp"),
    "score.merge": ("share", "max"),
    "train.optimizer": ("adam", "adagrad", "sgd"),
    "train.lr_schedule": ("constant", "cosine"),
    "train.launcher": ("spark", "horovodrun", "local"),
    "evaluate.split": ("valid", "test"),
    "nightly.train_mode": ("full", "warm"),
}


def _check_type(key: str, value: Any, expected: Any, origin: str) -> Any:
    """Return ``value`` if it fits ``expected``; ints widen to float, nothing else is coerced."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (int, float, str, bool):
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ConfigError(
            f"config key '{key}' has value {value!r} of type {type(value).__name__} (from {origin}); "
            f"expected {getattr(expected, '__name__', expected)}"
        )
    return value


def _build(cls: type, data: dict, prefix: str, origin: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(
            f"unknown config key '{key}' (from {origin}); known keys under "
            f"'{prefix.rstrip('.') or '<top>'}': {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        expected = hints[name]
        if dataclasses.is_dataclass(expected):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' must be a mapping (from {origin}), got {value!r}")
            kwargs[name] = _build(expected, value, key + ".", origin)
            continue
        kwargs[name] = _check_type(key, value, expected, origin)
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(
                f"config key '{key}' has value {value!r} (from {origin}); allowed: {', '.join(_CHOICES[key])}"
            )
    section = cls(**kwargs)
    if cls is PreprocessSection:
        _check_share_values(section, origin)
    return section


def _check_share_values(pre: PreprocessSection, origin: str) -> None:
    """``valid_share`` > 0 and ``test_share`` ≥ 0, finite; checked as each layer is read."""
    for key, value, low in (("valid_share", pre.valid_share, "0 < "), ("test_share", pre.test_share, "0 ≤ ")):
        if not math.isfinite(value) or value < 0 or (key == "valid_share" and value == 0):
            raise ConfigError(f"config key 'preprocess.{key}' has value {value!r} (from {origin}); "
                              f"allowed: a finite number with {low}{key} and valid_share + test_share < 1")


def _check_share_sum(pre: PreprocessSection, origin: str) -> None:
    """valid_share + test_share < 1, so every user keeps a training part; checked on the merged
    config only (a later layer may lower the other share). The sum is taken on the shares as
    written (decimal), as the split floors them."""
    if Decimal(str(pre.valid_share)) + Decimal(str(pre.test_share)) >= 1:
        raise ConfigError(f"config keys 'preprocess.valid_share' ({pre.valid_share!r}) and 'preprocess.test_share' "
                          f"({pre.test_share!r}) sum to 1 or more (from {origin}); allowed: valid_share + test_share "
                          f"< 1, so that every user keeps some training events")


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "conf":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass an existing YAML file to --conf")
    try:
        data = _yaml(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file '{path}' is not valid YAML: {' '.join(str(error).split())}; "
                          f"fix the file (quote values with special characters, e.g. \"\\t\" for a tab)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    return data


def _parse_override(item: str) -> tuple[list[str], Any]:
    match = re.fullmatch(r"([A-Za-z_][\w.]*)=(.*)", item)
    if not match:
        raise ConfigError(f"override '{item}' is not of the form section.key=value")
    key, text = match.groups()
    try:
        return key.split("."), _yaml(text) if text else ""
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "it does not parse"
        raise ConfigError(f"--set {key}={text!r}: the value is not valid YAML ({problem}); write special "
                          f"characters as a quoted YAML string, e.g. --set '{key}=\"\\t\"' for a tab") from None


def load_config(conf: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve the defaults, then ``conf`` (a YAML path), then ``overrides`` (``a.b=c``)."""
    data = Config().to_dict()
    layers: list[tuple[dict, str]] = []
    if conf:
        layers.append((_read_yaml(Path(conf)), str(conf)))
    for item in overrides:
        keys, value = _parse_override(item)
        nested: dict = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        layers.append((nested, f"--set {item}"))
    cfg = Config()
    for layer, origin in layers:
        # Build after every layer so that an error names the layer it came from.
        data = _merge(data, layer)
        cfg = _build(Config, data, "", origin)
    _check_share_sum(cfg.preprocess, " then ".join(origin for _, origin in layers) or "the defaults")
    return cfg


def from_dict(data: dict) -> Config:
    """Rebuild a Config from :meth:`Config.to_dict` output (e.g. on a Horovod rank)."""
    cfg = _build(Config, data, "", "resolved config")
    _check_share_sum(cfg.preprocess, "resolved config")
    return cfg
