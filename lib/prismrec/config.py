"""Typed, frozen configuration: YAML layering, ``--set a.b=c`` overrides, and every check.

Precedence, lowest first: the defaults below (documented, key by key, in
``conf/base.yaml``, which a test keeps equal to them) → a named file → ``--set``.
Unknown keys, wrong types and values out of range raise :class:`ConfigError` naming
the key, its value, the layer it came from and what is allowed. Every section checks
its own values, and the keys that must go together, when it is built
(``__post_init__``), so a Config that exists is valid: the stages, ranks and
executors it is passed to do not check it again.

Importing this module loads no numpy, pandas or pyarrow: the CLI rejects a bad
config within a second.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import re
import typing
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from prismrec.errors import EXIT_CONFIG, PrismrecError
from prismrec.schema import EVENT_TYPES as S_EVENT_TYPES


class _Loader(yaml.SafeLoader):
    """YAML without implicit dates: ``dt: 2026-01-14`` stays the string the config expects."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


class ConfigError(PrismrecError, ValueError):
    """A configuration value is unknown, of the wrong type, or out of range (exit code 2)."""

    exit_code = EXIT_CONFIG


class InvalidValue(ConfigError):
    """``values`` ({dotted key: value}) break ``allowed``; ``related`` keys took part in the check.

    Raised by the sections' checks, which do not know where a value came from; the loader
    raises it again with ``origin``, the layers that set those keys.
    """

    def __init__(self, values: dict[str, Any], allowed: str, related: tuple[str, ...] = (),
                 problem: str = "", origin: str = ""):
        self.values, self.allowed, self.related, self.problem, self.origin = values, allowed, related, problem, origin
        where = f" (from {origin})" if origin else ""
        if len(values) == 1 and not problem:
            [(key, value)] = values.items()
            message = f"config key '{key}' has value {value!r}{where}; allowed: {allowed}"
        else:
            named = " and ".join(f"'{key}' ({value!r})" for key, value in values.items())
            message = f"config keys {named} {problem or 'do not go together'}{where}; allowed: {allowed}"
        super().__init__(message)

    @property
    def keys(self) -> tuple[str, ...]:
        return (*self.values, *self.related)

    def located(self, origin: str) -> "InvalidValue":
        return InvalidValue(self.values, self.allowed, self.related, self.problem, origin)

    def __reduce__(self):  # pickled whole (e.g. from a Spark task), not from the message alone
        return InvalidValue, (self.values, self.allowed, self.related, self.problem, self.origin)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_date(value) -> bool:
    """Whether ``value`` is a real calendar day written YYYY-MM-DD."""
    if not isinstance(value, str) or re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is None:
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def _require(ok: bool, key: str, value: Any, allowed: str, related: tuple[str, ...] = ()) -> None:
    if not ok:
        raise InvalidValue({key: value}, allowed, related)


def _one_of(key: str, value: Any, choices: tuple[str, ...]) -> None:
    _require(value in choices, key, value, ", ".join(choice or '""' for choice in choices))


def _one_character(key: str, value: Any) -> None:
    # Each file's header line is split on the driver by Python's csv module, which takes one character.
    _require(isinstance(value, str) and len(value) == 1, key, value,
             "one character, e.g. ',' or ';', or \"\\t\" (quoted) for a tab")


def _at_least(key: str, value: Any, low: int) -> None:
    _require(_is_int(value) and value >= low, key, value, f"an integer >= {low}")


def _positive(key: str, value: Any) -> None:
    _require(_is_number(value) and value > 0, key, value, "a finite number > 0")


def _fraction(key: str, value: Any) -> None:
    _require(_is_number(value) and 0 <= value <= 1, key, value, "a number from 0 to 1")


def _int_list(key: str, values: Any) -> None:
    _require(isinstance(values, list) and bool(values) and all(_is_int(value) and value > 0 for value in values),
             key, values, "a non-empty list of integers > 0")


DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "click": 1.0, "cart": 2.0, "fav": 2.0, "buy": 3.0, "rate": 1.0}
# The synthetic user ids start at 1,000,000: this ceiling keeps them at 7 digits, so
# string order equals numeric order.
MAX_SYNTHETIC_USERS = 9_000_000


@dataclass(frozen=True)
class RunSection:
    name: str = "local"
    seed: int = 42
    dt: str = ""  # output partition date YYYY-MM-DD; empty means the last day of the logs

    def __post_init__(self):
        _require(self.dt == "" or _is_date(self.dt), "run.dt", self.dt, '"" or a date written YYYY-MM-DD')


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

    def __post_init__(self):
        _at_least("spark.shuffle_partitions", self.shuffle_partitions, 1)


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes, shape and seed of the synthetic logs (the ``synthetic`` section; see ``synthetic.py``)."""

    num_users: int = 2000
    num_items: int = 3000
    num_categories: int = 60
    num_topics: int = 8
    max_interests: int = 4
    min_interest_weight: float = 0.2
    mean_events_per_user: float = 40.0
    min_events_per_user: int = 8
    num_days: int = 14
    start_date: str = "2026-01-01"
    zipf_exponent: float = 1.1
    mean_session_length: float = 6.0
    noise_fraction: float = 0.05
    focus: float = 0.7
    interest_width: float = 0.03
    interest_drift: float = 0.4
    seed: int = 7

    def __post_init__(self):
        # In this order, so every ceiling is a valid integer when it is compared.
        ceilings = {"num_users": (MAX_SYNTHETIC_USERS, ""), "num_categories": (self.num_items, "num_items"),
                    "num_topics": (self.num_categories, "num_categories"),
                    "max_interests": (self.num_topics, "num_topics")}
        for name in ("num_users", "num_items", "num_categories", "num_topics", "max_interests",
                     "min_events_per_user", "num_days"):
            value = getattr(self, name)
            ceiling, ceiling_key = ceilings.get(name, (math.inf, ""))
            _require(_is_int(value) and 1 <= value <= ceiling, f"synthetic.{name}", value,
                     "an integer >= 1" + (f" and <= synthetic.{ceiling_key} ({ceiling})" if ceiling_key
                                          else f" and <= {ceiling}" if ceiling < math.inf else ""),
                     (f"synthetic.{ceiling_key}",) if ceiling_key else ())
        for name, in_range, allowed in (
                ("mean_events_per_user", lambda value: value > 0, "a number > 0"),
                ("zipf_exponent", lambda value: value >= 0, "a number >= 0 (0 is uniform popularity)"),
                ("mean_session_length", lambda value: value >= 1, "a number >= 1"),
                ("noise_fraction", lambda value: 0 <= value < 1, "a number >= 0 and < 1"),
                ("focus", lambda value: 0 <= value <= 1, "a number from 0 to 1"),
                ("interest_width", lambda value: 0 < value <= 1, "a number > 0 and <= 1"),
                ("interest_drift", lambda value: 0 <= value <= 1, "a number from 0 to 1")):
            value = getattr(self, name)
            _require(_is_number(value) and in_range(value), f"synthetic.{name}", value, allowed)
        # Every held interest gets the floor, so up to max_interests of them must fit in a weight of 1.
        floor = self.min_interest_weight
        _require(_is_number(floor) and 0 <= floor and floor * self.max_interests <= 1,
                 "synthetic.min_interest_weight", floor,
                 f"a number from 0 to 1/synthetic.max_interests = {1 / self.max_interests:.4g} (each of up to "
                 f"max_interests interests gets at least this weight): lower it, or lower max_interests",
                 ("synthetic.max_interests",))
        _at_least("synthetic.seed", self.seed, 0)
        _require(_is_date(self.start_date), "synthetic.start_date", self.start_date, "a date written YYYY-MM-DD")


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

    def __post_init__(self):
        _one_of("source.items.format", self.format, ("", "csv", "jsonl", "parquet"))
        _one_character("source.items.csv_delimiter", self.csv_delimiter)


@dataclass(frozen=True)
class SourceSection:
    format: str = "synthetic"
    path: str = ""  # empty: <paths.data>/synthetic/UserBehavior.csv
    csv_delimiter: str = ","
    mapping: MappingSection = field(default_factory=MappingSection)
    items: CatalogueSection = field(default_factory=CatalogueSection)

    def __post_init__(self):
        _one_of("source.format", self.format, ("synthetic", "taobao", "movielens", "csv", "jsonl", "parquet"))
        _one_character("source.csv_delimiter", self.csv_delimiter)


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
    targets_per_row: int = 16
    row_group_rows: int = 4096
    num_files: int = 8

    def __post_init__(self):
        _fraction("preprocess.max_bad_fraction", self.max_bad_fraction)
        _require(_is_date(self.min_timestamp), "preprocess.min_timestamp", self.min_timestamp,
                 "a date written YYYY-MM-DD")
        _one_of("preprocess.protocol", self.protocol, ("users", "time", "last"))
        _one_of("preprocess.example_sampling", self.example_sampling, ("recent", "random"))
        for name in ("max_hist_len", "targets_per_row", "row_group_rows", "num_files"):
            _at_least(f"preprocess.{name}", getattr(self, name), 1)
        allowed = "a finite number with {}{} and valid_share + test_share < 1"
        _require(_is_number(self.valid_share) and self.valid_share > 0, "preprocess.valid_share",
                 self.valid_share, allowed.format("0 < ", "valid_share"))
        _require(_is_number(self.test_share) and self.test_share >= 0, "preprocess.test_share",
                 self.test_share, allowed.format("0 ≤ ", "test_share"))
        # Every user keeps a training part. The sum is taken on the shares as written
        # (decimal), as the split floors them.
        if Decimal(str(self.valid_share)) + Decimal(str(self.test_share)) >= 1:
            raise InvalidValue({"preprocess.valid_share": self.valid_share, "preprocess.test_share": self.test_share},
                               "valid_share + test_share < 1, so that every user keeps some training events",
                               problem="sum to 1 or more")


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

    def __post_init__(self):
        _one_of("model.encoder", self.encoder, ("clustered", "self_attentive", "capsule", "mean_pool", "seed_mlp"))
        for name in ("num_interests", "embedding_dim", "hidden_dim"):
            _at_least(f"model.{name}", getattr(self, name), 1)


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
    weight_decay: float = 0.0  # decoupled weight decay of the optimizer (Loshchilov & Hutter 2019); 0 = none

    def __post_init__(self):
        _one_of("train.launcher", self.launcher, ("spark", "horovodrun", "local"))
        _require(_is_number(self.weight_decay) and self.weight_decay >= 0, "train.weight_decay", self.weight_decay,
                 "a finite number >= 0")
        _one_of("train.optimizer", self.optimizer, ("adam", "adagrad", "sgd"))
        _one_of("train.lr_schedule", self.lr_schedule, ("constant", "cosine"))
        for name in ("num_proc", "epochs", "batch_size"):
            _at_least(f"train.{name}", getattr(self, name), 1)
        _at_least("train.num_negatives", self.num_negatives, 0)
        _positive("train.learning_rate", self.learning_rate)
        _positive("train.temperature", self.temperature)


@dataclass(frozen=True)
class ScoreSection:
    model_id: str = ""  # empty: the model the last train stage wrote
    top_n: int = 50
    merge: str = "max"
    diversity: float = 0.0
    interest_prior: float = 0.0
    exclude_event_types: list = field(default_factory=lambda: list(S_EVENT_TYPES))
    batch_users: int = 128
    arrow_batch_rows: int = 2048
    retrieval: str = "auto"        # exact | ann | auto (ann from ann_min_items items on)
    ann_min_items: int = 1_000_000
    ann_lists: int = 0             # inverted lists of the index; 0 = 4·√M
    ann_probes: int = 32           # lists visited per interest
    ann_recall_users: int = 256    # users whose ann lists are checked against exact ones each run; 0 = none

    def __post_init__(self):
        _one_of("score.merge", self.merge, ("share", "max"))
        _one_of("score.retrieval", self.retrieval, ("auto", "exact", "ann"))
        for name in ("top_n", "batch_users", "arrow_batch_rows", "ann_min_items", "ann_probes"):
            _at_least(f"score.{name}", getattr(self, name), 1)
        for name in ("ann_lists", "ann_recall_users"):
            _at_least(f"score.{name}", getattr(self, name), 0)
        _require(_is_number(self.diversity) and self.diversity >= 0, "score.diversity", self.diversity,
                 "a finite number >= 0")
        _require(_is_number(self.interest_prior), "score.interest_prior", self.interest_prior, "a finite number")
        _require(isinstance(self.exclude_event_types, list)
                 and all(event_type in S_EVENT_TYPES for event_type in self.exclude_event_types),
                 "score.exclude_event_types", self.exclude_event_types,
                 f"a list of event types out of {', '.join(S_EVENT_TYPES)}")
        if self.merge == "share":
            # The share merge keeps each interest's own order and already weighs interests by their share.
            for name in ("diversity", "interest_prior"):
                _require(getattr(self, name) == 0, f"score.{name}", getattr(self, name),
                         f"0 with score.merge=share (score.diversity and score.interest_prior apply to the max "
                         f"merge only): set score.merge=max, or score.{name}=0", ("score.merge",))


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

    def __post_init__(self):
        _int_list("evaluate.ks", self.ks)
        _one_of("evaluate.split", self.split, ("valid", "test"))
        names = self.compare
        _require(isinstance(names, list) and bool(names) and all(isinstance(name, str) and name for name in names)
                 and len(set(names)) == len(names), "evaluate.compare", names,
                 "a non-empty list of distinct system names (model, popularity, als, itemknn or a model id)")
        _require(isinstance(self.other_outputs, list) and all(isinstance(path, str) and path
                                                              for path in self.other_outputs),
                 "evaluate.other_outputs", self.other_outputs, "a list of output folders")
        _int_list("evaluate.als_ranks", self.als_ranks)
        _require(isinstance(self.als_reg_params, list) and bool(self.als_reg_params)
                 and all(_is_number(value) and value >= 0 for value in self.als_reg_params),
                 "evaluate.als_reg_params", self.als_reg_params, "a non-empty list of numbers >= 0")
        _at_least("evaluate.itemknn_neighbours", self.itemknn_neighbours, 1)


@dataclass(frozen=True)
class NightlySection:
    train_mode: str = "full"  # full | warm (start from the published model's weights)
    max_ndcg_drop: float = 0.05  # refuse to publish below (1 - this) × the published model's valid NDCG@50
    keep_models: int = 7  # nightly model directories kept after a publish (newest dates; 0 keeps all)

    def __post_init__(self):
        _one_of("nightly.train_mode", self.train_mode, ("full", "warm"))
        _fraction("nightly.max_ndcg_drop", self.max_ndcg_drop)
        _require(_is_int(self.keep_models) and self.keep_models >= 0, "nightly.keep_models", self.keep_models,
                 "an integer >= 0: the number of nights whose models to keep, or 0 to keep them all")


@dataclass(frozen=True)
class TrackingSection:
    enabled: bool = True
    uri: str = ""  # "" = MLFLOW_TRACKING_URI, else Databricks' workspace server, else <paths.output>/mlruns
    experiment: str = "prismrec"  # on Databricks a relative name goes under /Shared/


DEFAULT_TUNE_SPACE = {
    "model.num_interests": {"type": "int", "low": 1, "high": 8},
    "model.embedding_dim": {"type": "categorical", "choices": [32, 64, 128]},
    "preprocess.max_hist_len": {"type": "categorical", "choices": [20, 50]},
    "train.learning_rate": {"type": "float", "low": 0.0003, "high": 0.003, "log": True},
    "train.temperature": {"type": "float", "low": 0.05, "high": 0.5, "log": True},
    "train.weight_decay": {"type": "categorical", "choices": [0.0, 0.00001, 0.0001]},
    "train.epochs": {"type": "int", "low": 5, "high": 30},
    "score.merge": {"type": "categorical", "choices": ["max", "share"]},
}
TUNE_TYPES = ("int", "float", "categorical")


def _check_space(space: Any) -> None:
    """Each ``tune.space`` entry: a dotted config key → {type: int|float (low, high, log) | categorical (choices)}."""
    _require(isinstance(space, dict) and bool(space), "tune.space", space,
             "a non-empty mapping of config keys to {type, low, high[, log]} or {type: categorical, choices}")
    for key, spec in space.items():
        where = f"tune.space.{key}"
        _require(isinstance(spec, dict) and spec.get("type") in TUNE_TYPES, where, spec,
                 f"a mapping with type: {' | '.join(TUNE_TYPES)}")
        if spec["type"] == "categorical":
            choices = spec.get("choices")
            _require(isinstance(choices, list) and bool(choices) and set(spec) == {"type", "choices"}, where, spec, "{type: categorical, choices: [a non-empty list]}")
            continue
        low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
        number = _is_int if spec["type"] == "int" else _is_number
        _require(set(spec) <= {"type", "low", "high", "log"} and number(low) and number(high) and low <= high
                 and isinstance(log, bool) and (not log or low > 0), where, spec,
                 f"{{type: {spec['type']}, low, high[, log: true]}} with low <= high (and low > 0 when log)")


@dataclass(frozen=True)
class TuneSection:
    trials: int = 20  # at most, over every invocation of the study (an interrupted tune resumes)
    timeout_s: int = 1200  # wall-clock budget of one invocation, seconds
    study: str = ""  # "" = run.name; the study lives in <paths.output>/tune/<study>/study.db
    seed: int = 42  # the sampler's seed
    startup_trials: int = 3  # trials that run in full before the pruner stops any
    warmup_epochs: int = 2  # epochs every trial runs at least: the pruner's first look is after this epoch
    space: dict = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_TUNE_SPACE)))

    def __post_init__(self):
        for name in ("trials", "timeout_s"):
            _at_least(f"tune.{name}", getattr(self, name), 1)
        for name in ("startup_trials", "warmup_epochs", "seed"):
            _at_least(f"tune.{name}", getattr(self, name), 0)
        _check_space(self.space)


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
    tracking: TrackingSection = field(default_factory=TrackingSection)
    tune: TuneSection = field(default_factory=TuneSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_values(self, changes: dict[str, Any], origin: str = "derived config") -> "Config":
        """A copy with ``{"section.key": value}`` (dotted keys, any depth) replaced, checked like a
        loaded config: raises ConfigError naming the key and ``origin`` for a bad value or an unknown key."""
        data = self.to_dict()
        for dotted, value in changes.items():
            *parents, name = dotted.split(".")
            node = data
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
                if node is None:
                    raise ConfigError(f"{dotted} is not a config key ({origin})")
            if name not in node:
                raise ConfigError(f"{dotted} is not a config key ({origin})")
            node[name] = value
        return _build(Config, data, "", lambda keys: origin)

    def config_hash(self) -> str:
        payload = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write the resolved config as YAML next to an output, secrets redacted."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(redact(self.to_dict()), sort_keys=False))
        return path


# Key names that hold secrets, e.g. fs.s3a.secret.key, fs.azure.account.key.<account>.dfs.core.windows.net,
# fs.gs.auth.service.account.private.key, fs.azure.sas.<container>.<account>.blob.core.windows.net.
_SECRET = re.compile(r"token|password|passwd|secret|credential|api[._-]?key|access[._-]?key|private[._-]?key"
                     r"|(^|[._-])key([._-]|$)|(^|[._-])sas([._-]|$)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^/@\s]+@")  # scheme://user:password@host
REDACTED = "***redacted***"


def redact(data):
    """A copy of ``data`` with the value of every key that names a secret replaced (at any depth), and
    the password of every ``scheme://user:password@host`` in a text replaced."""
    if isinstance(data, dict):
        return {key: REDACTED if isinstance(key, str) and _SECRET.search(key) and not isinstance(value, dict)
                else redact(value) for key, value in data.items()}
    if isinstance(data, list):
        return [redact(item) for item in data]
    if isinstance(data, str):
        return _URL_PASSWORD.sub(lambda match: match.group(1) + REDACTED + "@", data)
    return data


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


OriginOf = Callable[[Iterable[str]], str]


def _build(cls: type, data: dict, prefix: str, origin_of: OriginOf) -> Any:
    """``cls`` from ``data``: keys and types first, then the section's own checks (``__post_init__``)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(
            f"unknown config key '{key}' (from {origin_of([key])}); known keys under "
            f"'{prefix.rstrip('.') or '<top>'}': {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        expected = hints[name]
        if dataclasses.is_dataclass(expected):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' must be a mapping (from {origin_of([key])}), got {value!r}")
            kwargs[name] = _build(expected, value, key + ".", origin_of)
        else:
            kwargs[name] = _check_type(key, value, expected, origin_of([key]))
    try:
        return cls(**kwargs)
    except InvalidValue as error:
        raise error.located(origin_of(error.keys)) from None


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        # spark.conf and tune.space are replaced whole: a layer states all of them.
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ("conf", "space"):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _sets(layer: dict, key: str) -> bool:
    """Whether ``layer`` holds the dotted ``key`` (or something under it)."""
    node: Any = layer
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


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


def load_config(conf: str | Path | list | tuple | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve the defaults, then ``conf`` (a YAML path, or several, each layered over the one before),
    then ``overrides`` (``a.b=c``), and check the result."""
    layers: list[tuple[dict, str]] = []
    for path in ([] if not conf else conf if isinstance(conf, (list, tuple)) else [conf]):
        layers.append((_read_yaml(Path(path)), str(path)))
    for item in overrides:
        keys, value = _parse_override(item)
        nested: dict = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        layers.append((nested, f"--set {item}"))
    data = Config().to_dict()
    for layer, _ in layers:
        data = _merge(data, layer)

    def origin_of(keys: Iterable[str]) -> str:
        """The layers that last set ``keys``, so that an error says where to fix it."""
        origins: list[str] = []
        for key in keys:
            origin = next((origin for layer, origin in reversed(layers) if _sets(layer, key)), "the defaults")
            if origin not in origins:
                origins.append(origin)
        return " and ".join(origins)

    # Checked once, on the merged layers: a later layer may fix a key an earlier one broke.
    return _build(Config, data, "", origin_of)


def from_dict(data: dict) -> Config:
    """Rebuild a Config from :meth:`Config.to_dict` output (e.g. on a Horovod rank)."""
    return _build(Config, data, "", lambda keys: "resolved config")
