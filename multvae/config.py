"""What a run computes with, as one schema (pydantic): each section of params.yaml is a frozen
dataclass whose fields carry their type and range, so unknown keys, wrong types (no "5" for 5, no
true for 1) and non-finite numbers are refused, and the first fault is one line naming the dotted
key. There are no default values here: conf/config.yaml holds them (multvae.params reads the file
whole, the catalogue and the study with it).

A variant is the base configuration with the overrides it names under `variants.<name>`; its
merged configuration is checked by the same schema.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, AllowInfNan, ConfigDict, Field, Strict, model_validator
from pydantic.dataclasses import dataclass

from multvae.errors import MultVAEError

# A variant's name is part of DVC stage names (train@<name>-<seed>-<fold>) and of shell commands.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")
# Rows that are not variants: the baseline stages' results (dvc.yaml stages of the same names).
BASELINES = ("most_popular", "ease", "rp3beta")
BLEND_SUFFIX = "_ease"  # a blend row's name: the Mult-VAE row it blends with EASE, and this suffix
CONTROL_BLEND = "rp3beta" + BLEND_SUFFIX  # RP3β blended with EASE: the control of every blend
# In `comparisons:`, a reference chosen on validation among the baselines the study ran, and a row
# list meaning every Mult-VAE-family row of the study.
BEST_BASELINE = "best_baseline"
EVERY_VAE_ROW = "*"
METRIC_PATTERN = re.compile(r"(ndcg|recall)@([1-9][0-9]*)")


class ConfigError(MultVAEError, ValueError):
    """A parameter is missing, unknown or out of range; the message names the key."""


# --- value types: strict (no "5" for 5, no true for 1), finite, each range beside its field -------

def _unique(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(values)) != len(values):
        raise ValueError(f"values repeat: {list(values)}")
    return values


SCHEMA = ConfigDict(extra="forbid", allow_inf_nan=False)
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), AllowInfNan(False)]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
NAME_RULE = r"^[A-Za-z0-9_]+$"
Name = Annotated[str, Strict(), Field(pattern=NAME_RULE)]
Seed = Annotated[int, Strict(), Field(ge=0, lt=2**32)]  # numpy and torch accept 0 .. 2^32 - 1
Size = Annotated[int, Strict(), Field(ge=1, le=1_000_000)]  # a layer, batch or count that fits memory
Metric = Annotated[str, Strict(), Field(pattern=METRIC_PATTERN.pattern)]
Unique = AfterValidator(_unique)


@dataclass(frozen=True, config=SCHEMA)
class SyntheticConfig:
    """Size and seed of the generated ratings (`data.dataset: synthetic`)."""

    users: Annotated[Int, Field(ge=10, le=10_000_000)]
    items: Annotated[Int, Field(ge=10, le=1_000_000)]
    ratings_per_user: Annotated[Float, Field(ge=5)]
    tastes: Annotated[Int, Field(ge=1)]
    seed: Seed

    @model_validator(mode="after")
    def _tastes_fit(self) -> SyntheticConfig:
        if self.tastes > self.items:
            raise ValueError(f"tastes: expected 1..items ({self.items}), got {self.tastes}")
        if self.ratings_per_user > self.items:
            raise ValueError(f"ratings_per_user: a user cannot rate more than the {self.items} items, "
                             f"got {self.ratings_per_user}")
        return self


SYNTHETIC_PRESETS = {
    "tiny": SyntheticConfig(users=300, items=200, ratings_per_user=30.0, tastes=5, seed=0),
    "small": SyntheticConfig(users=2000, items=1000, ratings_per_user=60.0, tastes=20, seed=0),
    "ml-20m": SyntheticConfig(users=138_493, items=26_744, ratings_per_user=155.0, tastes=50, seed=0),
}


@dataclass(frozen=True, config=SCHEMA)
class DataConfig:
    dataset: Literal["ml-20m", "ml-100k", "ml-1m", "ml-10m", "ml-25m", "ml-32m", "ml-latest",
                     "ml-latest-small", "synthetic", "auto"]
    source: Str | None  # a local archive or ratings file; null: download `dataset`
    min_rating: Annotated[Float, Field(ge=0, le=5)]
    min_user_positives: Annotated[Int, Field(ge=2, le=100_000)]
    split: Literal["heldout_users", "temporal"]
    heldout_users: Annotated[Float, Field(gt=0)]  # a count, or below 0.5 a fraction of the users
    target_fraction: Annotated[Float, Field(gt=0, lt=1)]
    seed: Seed
    kfold: Annotated[Int, Field(ge=1, le=1000)]  # 1: one test set; K >= 2: users in K folds
    folds: Annotated[tuple[Annotated[Int, Field(ge=0)], ...], Field(min_length=1), Unique]
    synthetic: SyntheticConfig

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        h = self.heldout_users
        if 0.5 <= h < 1:
            raise ValueError(f"heldout_users: a fraction must be below 0.5 (validation and test each take "
                             f"it), got {h}")
        if h >= 1 and not float(h).is_integer():
            raise ValueError(f"heldout_users: a count must be a whole number, got {h}")
        if self.kfold > 1 and self.split != "heldout_users":
            raise ValueError(f"kfold: folds split users, so they need split: heldout_users (got "
                             f"{self.split}); set kfold: 1")
        if any(f >= self.kfold for f in self.folds):
            raise ValueError(f"folds: expected fold numbers in 0..{self.kfold - 1} (kfold={self.kfold}), "
                             f"got {list(self.folds)}")
        if self.dataset == "synthetic" and self.source is not None:
            raise ValueError(f"source: {self.source!r} is set but dataset is synthetic, which reads no file; "
                             "set source: null, or dataset to the release the file is (or auto)")
        return self

    def heldout_count(self, n_users: int) -> int:
        """Validation users (and as many test users) out of `n_users`: `heldout_users` is a count,
        or below 1 a fraction of the users."""
        requested = self.heldout_users
        return int(round(requested * n_users)) if requested < 1 else int(requested)


@dataclass(frozen=True, config=SCHEMA)
class ModelConfig:
    hidden_dims: Annotated[tuple[Size, ...], Field(min_length=1, max_length=32)]
    latent_dim: Size
    activation: Literal["tanh", "relu"]
    dropout: Annotated[Float, Field(ge=0, lt=1)]
    # RecVAE's ingredients (Shenbin et al., WSDM 2020), each on its own switch:
    encoder: Literal["mlp", "dense"]  # dense: every layer sees all earlier ones, swish, LayerNorm
    decoder: Literal["mirror", "linear"]  # linear: one layer from the latent space to the items
    prior: Literal["standard", "composite"]  # composite: N(0, I), last epoch's posterior, wide
    # composite: the three components' weights, in that order
    prior_weights: Annotated[tuple[Annotated[Float, Field(ge=0)], ...], Field(min_length=3, max_length=3)]

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.encoder == "dense" and len(set(self.hidden_dims)) != 1:
            raise ValueError("hidden_dims: the dense encoder adds every layer's output to the next, so its "
                             f"layers need one width, got {list(self.hidden_dims)}")
        w = self.prior_weights
        if abs(sum(w) - 1) > 1e-9 or w[0] + w[2] <= 0:
            raise ValueError("prior_weights: expected three non-negative weights summing to 1 (standard "
                             "normal, last epoch's posterior, wide normal), not all on the posterior; "
                             f"got {list(w)}")
        return self


@dataclass(frozen=True, config=SCHEMA)
class BetaConfig:
    method: Literal["anneal", "constant", "cyclical", "user_scaled"]
    cap: Annotated[Float, Field(ge=0)]
    anneal_fraction: Annotated[Float, Field(gt=0, le=1)]  # anneal: share of the updates to reach cap
    total_anneal_steps: Annotated[Int, Field(ge=1)] | None  # anneal: absolute override (β = step / this)
    cycles: Annotated[Int, Field(ge=1, le=1_000_000)]
    ratio: Annotated[Float, Field(gt=0, le=1)]
    gamma: Annotated[Float, Field(ge=0)]


@dataclass(frozen=True, config=SCHEMA)
class OptimConfig:
    name: Literal["adam", "sgd"]
    lr: Annotated[Float, Field(gt=0)]
    weight_decay: Annotated[Float, Field(ge=0)]
    scheme: Literal["joint", "alternating"]  # alternating: encoder passes, then decoder passes
    encoder_passes: Annotated[Int, Field(ge=1, le=100)]  # alternating: passes updating the encoder
    decoder_passes: Annotated[Int, Field(ge=1, le=100)]  # alternating: then passes updating the decoder
    decoder_dropout: Bool  # alternating: input dropout in the decoder passes too (false: RecVAE)


@dataclass(frozen=True, config=SCHEMA)
class TrainConfig:
    # Passes over the training users. An alternating epoch (optim.scheme) is encoder_passes +
    # decoder_passes of them, so RecVAE's 4-pass epochs run 200 / 4 = 50 epochs: one budget serves
    # every row, and `-S train.epochs=8` shortens them all.
    epochs: Annotated[Int, Field(ge=1, le=100_000)]
    # A floor on the updates, so that a recipe tuned on data with many batches an epoch is not
    # under-trained on small data: epochs are added until the run makes this many. 0: epochs alone.
    min_updates: Annotated[Int, Field(ge=0, le=100_000_000)]
    batch_size: Size
    seeds: Annotated[tuple[Seed, ...], Field(min_length=1), Unique]


@dataclass(frozen=True, config=SCHEMA)
class RuntimeConfig:
    """How to run, never what is computed: no stage lists these, so changing them reruns nothing."""

    device: Literal["auto", "cpu", "cuda"]
    threads: Annotated[Int, Field(ge=0, le=1024)]  # 0: all cores
    eval_batch_size: Size
    compile: Bool
    checkpoint_seconds: Annotated[Float, Field(ge=0)]  # at most one resume checkpoint this often


@dataclass(frozen=True, config=SCHEMA)
class ReportConfig:
    """Display names of variants and baselines in the table and figures (the aggregate stage's)."""

    labels: dict[Name, Annotated[Str, Field(min_length=1, max_length=200)]]


@dataclass(frozen=True, config=SCHEMA)
class StudyConfig:
    """Which variants of the catalogue run, as rows of the table (the train and evaluate stages'
    matrix), and the name under which aggregate files the study's results (results/<name>/)."""

    name: Name
    rows: Annotated[tuple[Name, ...], Field(min_length=1), Unique]
    # Rows whose scores are blended with EASE's (the blend stage): each adds the row <row>_ease.
    blends: Annotated[tuple[Name, ...], Unique]


@dataclass(frozen=True, config=SCHEMA)
class EvalConfig:
    ks: Annotated[tuple[Annotated[Int, Field(ge=1, le=100_000)], ...], Field(min_length=1), Unique]
    confidence: Annotated[Float, Field(gt=0, lt=1)]  # 1 - confidence: each Holm family's error rate


@dataclass(frozen=True, config=SCHEMA)
class BaselinesConfig:
    ease_lambdas: Annotated[tuple[Annotated[Float, Field(gt=0)], ...], Field(min_length=1), Unique]
    ease_refine: Annotated[Int, Field(ge=0, le=10)]  # rounds of geometric midpoints around the best λ
    rp3_alphas: Annotated[tuple[Annotated[Float, Field(gt=0)], ...], Field(min_length=1), Unique]
    rp3_betas: Annotated[tuple[Annotated[Float, Field(ge=0, le=1)], ...], Field(min_length=1), Unique]
    # The share of the Mult-VAE row's standardised scores in a blend, chosen on validation users.
    blend_weights: Annotated[tuple[Annotated[Float, Field(ge=0, le=1)], ...], Field(min_length=2), Unique]


@dataclass(frozen=True, config=SCHEMA)
class ComparisonConfig:
    """One Holm family: `rows` each against `reference` on `metric` (absent: the key metric, NDCG at
    the largest cut-off). Names are rows, tuning groups or baselines of the catalogue."""

    reference: Name
    rows: Annotated[tuple[Annotated[Str, Field(pattern=r"^([A-Za-z0-9_]+|\*)$")], ...],
                    Field(min_length=1), Unique]
    metric: Metric | None = None  # absent: the key metric


@dataclass(frozen=True, config=SCHEMA)
class ClaimConfig:
    """A claim of the paper (or of a later one) that the study can check: `row` is `expect`
    (better or worse) than `reference` on `metric`."""

    row: Name
    reference: Name
    expect: Literal["better", "worse"]
    source: Annotated[Str, Field(min_length=1)]  # where the claim is made, for the reader
    metric: Metric | None = None  # absent: the key metric

    @model_validator(mode="after")
    def _two_rows(self) -> ClaimConfig:
        if self.row == self.reference:
            raise ValueError(f"row and reference are the same ({self.row})")
        return self


@dataclass(frozen=True, config=SCHEMA)
class Config:
    """What one run computes with: the base sections, with a variant's overrides merged in."""

    data: DataConfig
    model: ModelConfig
    beta: BetaConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig
    baselines: BaselinesConfig


# --- turning pydantic's errors into one line naming the key ---------------------------------------

def dotted_key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in (p for p in loc if p != "[key]"):
        if isinstance(part, int) or not re.fullmatch(r"[A-Za-z0-9_@*-]+", part):
            key += f"[{part!r}]"  # an index, or a key that needs quoting to be seen
        else:
            key += f".{part}" if key else part
    return key


def _unwrap(tp: Any) -> Any:
    """The class under Annotated[...] and `X | None`."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _fields_at(cls: Any, loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where `loc` points (its last part is the unknown key)."""
    tp = cls
    parts = list(loc[:-1])
    while parts:
        tp = _unwrap(tp)
        if dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp, include_extras=True)[str(parts.pop(0))]
        elif typing.get_origin(tp) is dict:
            parts.pop(0)
            tp = typing.get_args(tp)[1]
        else:
            return []
    tp = _unwrap(tp)
    return [f.name for f in dataclasses.fields(tp)] if dataclasses.is_dataclass(tp) else []


def _message(error: Any, cls: Any, prefix: str) -> str:
    loc = tuple(error["loc"])
    key = prefix + dotted_key(loc) if loc else prefix.rstrip(".") or "(top level)"
    kind = error["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        allowed = _fields_at(cls, loc)
        return f"{key}: unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    if kind in ("missing", "missing_argument"):
        return (f"{key}: missing; params.yaml states every parameter (conf/config.yaml holds the defaults: "
                "compose it with `dvc exp run`)")
    message = error["msg"].replace("Input should be ", "expected ")
    if kind == "literal_error":
        return f"{key}: {error['input']!r} is not one of {error['ctx']['expected'].replace(' or ', ', ')}"
    if kind == "string_pattern_mismatch" and error["ctx"]["pattern"] == NAME_RULE:
        got = "" if loc[-1] == "[key]" else f"{error['input']!r}: "  # a key is shown in `key`
        return (f"{key}: {got}a name may hold only letters, digits and '_' (it is part "
                "of DVC stage names, file names and shell commands; DVC reads a dot in a parameter path "
                "as nesting)")
    if kind == "string_pattern_mismatch" and error["ctx"]["pattern"] == METRIC_PATTERN.pattern:
        return f"{key}: expected ndcg@<k> or recall@<k>, got {error['input']!r}"
    if kind in ("too_short", "too_long"):
        bound = error["ctx"].get("min_length" if kind == "too_short" else "max_length")
        least = "at least" if kind == "too_short" else "at most"
        return f"{key}: expected {least} {bound} value(s), got {error['input']!r}"
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        if ":" in message.split(" ")[0]:  # a check on several fields names its own key
            field_name, _, rest = message.partition(": ")
            return f"{key + '.' if loc else prefix}{field_name}: {rest}"
        return f"{key}: {message}"
    if "input" in error:
        return f"{key}: {message}, got {error['input']!r}"
    return f"{key}: {message}"


def validate(cls: Any, values: Any, prefix: str = "") -> Any:
    try:
        return pydantic.TypeAdapter(cls).validate_python(values)
    except pydantic.ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0], cls, prefix)) from None


def from_dict(values: dict[str, Any]) -> Config:
    """A full configuration (every base section, every key) checked against the schema."""
    return typing.cast(Config, validate(Config, values))


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-friendly form (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return typing.cast(dict[str, Any], plain(dataclasses.asdict(cfg)))
