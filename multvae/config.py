"""Typed configuration, read from params.yaml and validated once, before any work starts.

A variant is the base configuration with the overrides it names under `variants.<name>`:
it states only what it changes, so the ablation matrix reads as a list of differences. A study
(`study:`) names which variants of that catalogue run as rows. `load_params` reads the file once
per command into one `Params`, checking every section and every variant before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from multvae.errors import MultVAEError

# Top-level sections of params.yaml that are not part of a result's configuration: `runtime`
# (execution settings), `report` (display labels), `tuning` (which grid point the table shows),
# `study` (which rows run), `comparisons` and `claims` (what the table tests) are read on their
# own, `variants` is merged.
SIDE_SECTIONS = ("variants", "runtime", "report", "tuning", "study", "comparisons", "claims")
# What a variant may change: what its own train and evaluate stages compute. The data, the
# evaluation and the baselines are shared by every row, so an override there would be ignored.
VARIANT_SECTIONS = ("model", "beta", "optim", "train")
# A variant's name is part of DVC stage names (train@<name>-<seed>-<fold>) and of shell commands.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")
# Rows that are not variants: the baseline stages' results (dvc.yaml stages of the same names).
BASELINES = ("most_popular", "ease", "rp3beta")
BLEND_SUFFIX = "_ease"  # a blend row's name: the Mult-VAE row it blends with EASE, and this
# In `comparisons:`, a reference chosen on validation among the baselines the study ran, and a row
# list meaning every Mult-VAE-family row of the study.
BEST_BASELINE = "best_baseline"
EVERY_VAE_ROW = "*"
METRIC_PATTERN = re.compile(r"(ndcg|recall)@([1-9][0-9]*)")


class ConfigError(MultVAEError, ValueError):
    """A parameter is missing, unknown or out of range; the message names the key."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of the generated ratings (`data.dataset: synthetic`)."""

    users: int = 2000
    items: int = 1000
    ratings_per_user: float = 60.0
    tastes: int = 20
    seed: int = 0


SYNTHETIC_PRESETS = {
    "tiny": SyntheticConfig(users=300, items=200, ratings_per_user=30, tastes=5),
    "small": SyntheticConfig(),
    "ml-20m": SyntheticConfig(users=138_493, items=26_744, ratings_per_user=155, tastes=50),
}


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["ml-20m", "ml-100k", "ml-1m", "ml-10m", "ml-25m", "ml-32m", "ml-latest",
                     "ml-latest-small", "synthetic", "auto"] = "ml-20m"
    source: str | None = None
    min_rating: float = 4.0
    min_user_positives: int = 5
    split: Literal["heldout_users", "temporal"] = "heldout_users"
    heldout_users: float = 10000
    target_fraction: float = 0.2
    seed: int = 98765
    kfold: int = 1  # 1: one test set of heldout_users; K >= 2: users in K folds, each a test set once
    folds: tuple[int, ...] = (0,)  # which folds to compute (dvc.yaml's fold axis)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def heldout_count(self, n_users: int) -> int:
        """Validation users (and as many test users) out of `n_users`: `heldout_users` is a count,
        or below 1 a fraction of the users."""
        requested = self.heldout_users
        return int(round(requested * n_users)) if requested < 1 else int(requested)


@dataclass(frozen=True)
class ModelConfig:
    hidden_dims: tuple[int, ...] = (600,)
    latent_dim: int = 200
    activation: Literal["tanh", "relu"] = "tanh"
    dropout: float = 0.5
    # RecVAE's ingredients (Shenbin et al., WSDM 2020), each on its own switch:
    encoder: Literal["mlp", "dense"] = "mlp"  # dense: every layer sees all earlier ones, swish, LayerNorm
    decoder: Literal["mirror", "linear"] = "mirror"  # linear: one layer from the latent space to the items
    prior: Literal["standard", "composite"] = "standard"  # composite: N(0, I), last epoch's posterior, wide
    prior_weights: tuple[float, ...] = (0.15, 0.75, 0.1)  # composite: of the three components, in that order


@dataclass(frozen=True)
class BetaConfig:
    method: Literal["anneal", "constant", "cyclical", "user_scaled"] = "anneal"
    cap: float = 0.2
    anneal_fraction: float = 0.855  # share of the run's updates after which anneal reaches its cap
    total_anneal_steps: int | None = None  # absolute override: beta = min(cap, step / this)
    cycles: int = 10
    ratio: float = 0.5
    gamma: float = 0.005


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheme: Literal["joint", "alternating"] = "joint"  # alternating: encoder passes, then decoder passes
    encoder_passes: int = 3  # alternating: passes over the users updating the encoder, each epoch
    decoder_passes: int = 1  # alternating: then passes updating the decoder
    decoder_dropout: bool = True  # alternating: input dropout in the decoder passes too (false: RecVAE)


@dataclass(frozen=True)
class TrainConfig:
    # Passes over the training users. An alternating epoch (optim.scheme) is encoder_passes +
    # decoder_passes of them, so RecVAE's 4-pass epochs run 200 / 4 = 50 epochs: one budget serves
    # every row, and `-S train.epochs=8` shortens them all.
    epochs: int = 200
    # A floor on the updates, so that a recipe tuned on data with many batches an epoch is not
    # under-trained on small data (ml-latest-small has one batch an epoch): epochs are added until
    # the run makes at least this many updates. 0: train.epochs alone.
    min_updates: int = 0
    batch_size: int = 500
    seeds: tuple[int, ...] = (98765,)


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run, never what is computed: no stage lists these, so changing them reruns nothing."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    eval_batch_size: int = 2000
    compile: bool = False
    checkpoint_seconds: float = 60.0  # at most one resume checkpoint this often (0: every epoch)


@dataclass(frozen=True)
class ReportConfig:
    """Display names of variants and baselines in the table and figures (the aggregate stage's)."""

    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    """Which variants of the catalogue run, as rows of the table (the train and evaluate stages'
    matrix), and the name under which aggregate files the study's results (results/<name>/)."""

    name: str = "default"
    rows: tuple[str, ...] = ()  # empty: every variant, in catalogue order
    # Rows whose scores are blended with EASE's (the blend stage): each adds the row <row>_ease.
    blends: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (20, 50, 100)
    confidence: float = 0.95  # of every interval; 1 - confidence is the tests' family-wise level


@dataclass(frozen=True)
class BaselinesConfig:
    ease_lambdas: tuple[float, ...] = (100.0, 300.0, 1000.0, 3000.0)
    ease_refine: int = 3  # rounds of geometric midpoints around the best λ (each halves the step)
    rp3_alphas: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25)
    rp3_betas: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6)
    # The share of the Mult-VAE row's standardised scores in a blend (the rest is EASE's), chosen on
    # each fold's validation users; 0 and 1 are each path alone.
    blend_weights: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class ComparisonConfig:
    """One Holm family: `rows` each against `reference` on `metric` (default: the key metric,
    NDCG at the largest cut-off). Names are rows, tuning groups or baselines of the study."""

    reference: str = "original"
    rows: tuple[str, ...] = (EVERY_VAE_ROW,)
    metric: str | None = None


@dataclass(frozen=True)
class ClaimConfig:
    """A claim of the paper (or of a later one) that the study can check: `row` is `expect`
    (better or worse) than `reference` on `metric`."""

    row: str
    reference: str
    expect: Literal["better", "worse"]
    metric: str | None = None  # default: the key metric
    source: str = ""  # where the claim is made, for the reader


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    beta: BetaConfig = field(default_factory=BetaConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check one value against its annotated type; the error names the dotted key."""
    origin = get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {_field_names(tp)}, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], key)
    if origin is dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, inner = get_args(tp)
        return {str(k): _convert(v, inner, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        (inner, _) = get_args(tp)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]}; allowed keys{' under ' + prefix if prefix else ''}: "
            f"{_field_names(cls)}"
        )
    required = [f.name for f in dataclasses.fields(cls) if f.name not in values
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if required:
        raise ConfigError(f"{prefix}: missing key {required[0]} (expected {_field_names(cls)})")
    kwargs = {
        name: _convert(values[name], hints[name], f"{prefix}.{name}" if prefix else name)
        for name in names
        if name in values
    }
    return cls(**kwargs)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def validate(cfg: Config) -> Config:
    """Range checks that the types alone do not express."""
    d, m, b, o, t, e = cfg.data, cfg.model, cfg.beta, cfg.optim, cfg.train, cfg.eval
    _require(0 <= d.min_rating <= 5, "data.min_rating", f"expected 0..5, got {d.min_rating}")
    _require(d.min_user_positives >= 2, "data.min_user_positives",
             f"expected at least 2, got {d.min_user_positives}")
    _require(d.heldout_users > 0, "data.heldout_users",
             f"expected a positive count or a fraction in (0, 0.5), got {d.heldout_users}")
    _require(d.heldout_users >= 1 or d.heldout_users < 0.5, "data.heldout_users",
             f"a fraction must be below 0.5 (validation and test each take it), got {d.heldout_users}")
    _require(d.heldout_users < 1 or float(d.heldout_users).is_integer(), "data.heldout_users",
             f"a count must be a whole number, got {d.heldout_users}")
    _require(0 < d.target_fraction < 1, "data.target_fraction",
             f"expected a fraction in (0, 1), got {d.target_fraction}")
    _require(d.kfold >= 1, "data.kfold", f"expected 1 (one held-out test set) or more folds, got {d.kfold}")
    _require(d.kfold == 1 or d.split == "heldout_users", "data.kfold",
             f"folds split users, so they need data.split: heldout_users (got {d.split}); set data.kfold: 1")
    _require(len(d.folds) >= 1 and len(set(d.folds)) == len(d.folds)
             and all(0 <= f < d.kfold for f in d.folds), "data.folds",
             f"expected distinct fold numbers in 0..{d.kfold - 1} (data.kfold={d.kfold}), "
             f"got {list(d.folds)}")
    s = d.synthetic
    _require(s.users >= 10, "data.synthetic.users", f"expected at least 10, got {s.users}")
    _require(s.items >= 10, "data.synthetic.items", f"expected at least 10, got {s.items}")
    _require(s.ratings_per_user >= 5, "data.synthetic.ratings_per_user",
             f"expected at least 5, got {s.ratings_per_user}")
    _require(1 <= s.tastes <= s.items, "data.synthetic.tastes",
             f"expected 1..data.synthetic.items, got {s.tastes}")
    _require(len(m.hidden_dims) > 0, "model.hidden_dims",
             "expected a non-empty list of layer sizes such as [600]")
    _require(all(h > 0 for h in m.hidden_dims), "model.hidden_dims",
             f"layer sizes must be positive, got {list(m.hidden_dims)}")
    _require(m.latent_dim > 0, "model.latent_dim", f"expected a positive size, got {m.latent_dim}")
    _require(0 <= m.dropout < 1, "model.dropout", f"expected 0 <= dropout < 1, got {m.dropout}")
    _require(m.encoder == "mlp" or len(set(m.hidden_dims)) == 1, "model.hidden_dims",
             f"the dense encoder adds every layer's output to the next, so its layers need one width, "
             f"got {list(m.hidden_dims)}")
    _require(len(m.prior_weights) == 3 and all(w >= 0 for w in m.prior_weights)
             and abs(sum(m.prior_weights) - 1) < 1e-9 and m.prior_weights[0] + m.prior_weights[2] > 0,
             "model.prior_weights", "expected three non-negative weights summing to 1 (standard normal, last "
             f"epoch's posterior, wide normal), not all on the posterior; got {list(m.prior_weights)}")
    _require(b.cap >= 0, "beta.cap", f"must not be negative, got {b.cap}")
    _require(b.gamma >= 0, "beta.gamma", f"must not be negative, got {b.gamma}")
    _require(b.total_anneal_steps is None or b.total_anneal_steps > 0, "beta.total_anneal_steps",
             f"expected a positive number of updates (or null), got {b.total_anneal_steps}")
    _require(0 < b.anneal_fraction <= 1, "beta.anneal_fraction",
             f"expected a share of training in (0, 1], got {b.anneal_fraction}")
    _require(b.cycles >= 1, "beta.cycles", f"expected at least 1, got {b.cycles}")
    _require(0 < b.ratio <= 1, "beta.ratio", f"expected 0 < ratio <= 1, got {b.ratio}")
    _require(o.lr > 0, "optim.lr", f"must be positive, got {o.lr}")
    _require(o.weight_decay >= 0, "optim.weight_decay", f"must not be negative, got {o.weight_decay}")
    _require(o.encoder_passes >= 1, "optim.encoder_passes", f"expected at least 1, got {o.encoder_passes}")
    _require(o.decoder_passes >= 1, "optim.decoder_passes", f"expected at least 1, got {o.decoder_passes}")
    _require(t.epochs >= 1, "train.epochs", f"expected at least 1, got {t.epochs}")
    _require(t.min_updates >= 0, "train.min_updates", f"expected 0 or more, got {t.min_updates}")
    _require(t.batch_size >= 1, "train.batch_size", f"expected at least 1, got {t.batch_size}")
    _require(len(t.seeds) >= 1, "train.seeds", "expected a non-empty list of integer seeds")
    _require(len(set(t.seeds)) == len(t.seeds), "train.seeds", f"seeds repeat: {list(t.seeds)}")
    _require(len(e.ks) >= 1 and all(k >= 1 for k in e.ks), "eval.ks",
             f"expected positive cut-offs, got {list(e.ks)}")
    _require(0 < e.confidence < 1, "eval.confidence", f"expected a level in (0, 1), got {e.confidence}")
    bl = cfg.baselines
    _require(len(bl.ease_lambdas) >= 1 and all(v > 0 for v in bl.ease_lambdas),
             "baselines.ease_lambdas", "expected a non-empty list of positive values")
    _require(0 <= bl.ease_refine <= 10, "baselines.ease_refine",
             f"expected 0..10 rounds, got {bl.ease_refine}")
    _require(len(bl.rp3_alphas) >= 1 and all(v > 0 for v in bl.rp3_alphas),
             "baselines.rp3_alphas", "expected a non-empty list of positive exponents")
    _require(len(bl.rp3_betas) >= 1 and all(0 <= v <= 1 for v in bl.rp3_betas),
             "baselines.rp3_betas", "expected a non-empty list of popularity penalties in [0, 1]")
    _require(len(set(bl.blend_weights)) >= 2 and all(0 <= v <= 1 for v in bl.blend_weights),
             "baselines.blend_weights", "expected at least two distinct weights in [0, 1]")
    return cfg


def from_dict(values: dict[str, Any]) -> Config:
    return validate(_build(Config, values, ""))


def _runtime(values: Any) -> RuntimeConfig:
    runtime: RuntimeConfig = _convert(values, RuntimeConfig, "runtime")
    _require(runtime.threads >= 0, "runtime.threads",
             f"expected 0 (all cores) or more, got {runtime.threads}")
    _require(runtime.eval_batch_size >= 1, "runtime.eval_batch_size",
             f"expected at least 1, got {runtime.eval_batch_size}")
    _require(runtime.checkpoint_seconds >= 0, "runtime.checkpoint_seconds",
             f"expected 0 (every epoch) or more, got {runtime.checkpoint_seconds}")
    return runtime


def _variants(values: Any) -> dict[str, dict[str, Any]]:
    """The catalogue: each name checked, each override restricted to what a variant's own stages
    compute (VARIANT_SECTIONS)."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError("variants: expected a mapping of variant name to overrides")
    for name, override in values.items():
        if name in BASELINES:
            raise ConfigError(f"variants.{name}: the name of a baseline ({', '.join(BASELINES)}); "
                              "choose another")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"variants.{name}: a variant name may hold only letters, digits and '_' (it is part of "
                "DVC stage names and shell commands, and DVC reads dots in parameter paths as nesting)")
        if override is None:
            continue
        if not isinstance(override, dict):
            raise ConfigError(f"variants.{name}: expected a mapping of overrides, got {override!r}")
        for section in override:
            if section not in VARIANT_SECTIONS:
                raise ConfigError(
                    f"variants.{name}.{section}: a variant may override only {', '.join(VARIANT_SECTIONS)} "
                    f"(what its own train and evaluate stages compute); `{section}` is shared by every row")
        if "seeds" in (override.get("train") or {}):
            raise ConfigError(f"variants.{name}.train.seeds: the seeds are shared by every variant "
                              "(dvc.yaml trains each variant x seed); set train.seeds instead")
    return {name: dict(override or {}) for name, override in values.items()}


def _tuning(values: Any, variants: list[str]) -> dict[str, tuple[str, ...]]:
    """Grids of variants whose best member (by validation) stands for them in the table. Members
    must be variants; a group may not reuse a variant's name."""
    groups: dict[str, tuple[str, ...]] = _convert(values, dict[str, tuple[str, ...]], "tuning") or {}
    for group, members in groups.items():
        _require(group not in variants and group not in BASELINES, f"tuning.{group}",
                 "a group may not be named like a variant or a baseline")
        unknown = [m for m in members if m not in variants]
        _require(not unknown and len(members) >= 1, f"tuning.{group}",
                 f"members must be variants of the `variants:` section; unknown: {', '.join(unknown)}")
    return groups


def _study(values: Any, variants: list[str]) -> StudyConfig:
    study: StudyConfig = _convert(values, StudyConfig, "study")
    _require(bool(NAME_PATTERN.fullmatch(study.name)), "study.name",
             f"expected letters, digits and '_' (it names the folder results/<name>), got {study.name!r}")
    unknown = [r for r in study.rows if r not in variants]
    _require(not unknown, "study.rows", f"not in the `variants:` catalogue: {', '.join(unknown)}")
    _require(len(set(study.rows)) == len(study.rows), "study.rows", f"rows repeat: {list(study.rows)}")
    rows = study.rows or tuple(variants)
    outside = [b for b in study.blends if b not in rows]
    _require(not outside, "study.blends", f"each must be a row of the study; not rows: {', '.join(outside)}")
    _require(len(set(study.blends)) == len(study.blends), "study.blends", f"repeated: {list(study.blends)}")
    clash = [b + BLEND_SUFFIX for b in study.blends if b + BLEND_SUFFIX in variants]
    _require(not clash, "study.blends", f"the blend's row name is already a variant: {', '.join(clash)}")
    return study


def _known_rows(variants: list[str], tuning: dict[str, tuple[str, ...]]) -> set[str]:
    """Names a comparison or claim may use: a study that does not run one leaves it out."""
    return {*variants, *tuning, *BASELINES, *(v + BLEND_SUFFIX for v in variants)}


def _check_metric(metric: str, key: str) -> None:
    """The form only: a study whose eval.ks lacks the cut-off leaves the claim or family out."""
    _require(bool(METRIC_PATTERN.fullmatch(metric)), key, f"expected ndcg@<k> or recall@<k>, got {metric!r}")


def _comparisons(values: Any, known: set[str]) -> dict[str, ComparisonConfig]:
    """Holm families of paired comparisons; every name must be a row the study can have."""
    families: dict[str, ComparisonConfig] = _convert(values, dict[str, ComparisonConfig], "comparisons") or {}
    for name, family in families.items():
        where = f"comparisons.{name}"
        _require(bool(NAME_PATTERN.fullmatch(name)), where,
                 "a family name may hold only letters, digits and '_'")
        _require(family.reference in known | {BEST_BASELINE}, f"{where}.reference",
                 f"expected a variant, tuning group, baseline or {BEST_BASELINE}, got {family.reference!r}")
        unknown = [r for r in family.rows if r not in known | {EVERY_VAE_ROW}]
        _require(bool(family.rows) and not unknown, f"{where}.rows",
                 f"expected variants, tuning groups or baselines (or '{EVERY_VAE_ROW}': every Mult-VAE row); "
                 f"unknown: {', '.join(unknown) or 'none given'}")
        if family.metric is not None:
            _check_metric(family.metric, f"{where}.metric")
    return families


def _claims(values: Any, known: set[str]) -> dict[str, ClaimConfig]:
    claims: dict[str, ClaimConfig] = _convert(values, dict[str, ClaimConfig], "claims") or {}
    for name, claim in claims.items():
        where = f"claims.{name}"
        _require(bool(NAME_PATTERN.fullmatch(name)), where,
                 "a claim name may hold only letters, digits and '_'")
        for part in ("row", "reference"):
            _require(getattr(claim, part) in known, f"{where}.{part}",
                     f"expected a variant, tuning group or baseline, got {getattr(claim, part)!r}")
        _require(claim.row != claim.reference, where, "row and reference are the same")
        if claim.metric is not None:
            _check_metric(claim.metric, f"{where}.metric")
    return claims


@dataclass(frozen=True)
class Params:
    """params.yaml, read and checked once: the base configuration, the variant catalogue, the
    study's rows and the side sections. `config(variant)` is a variant's full configuration."""

    path: Path
    text: str  # the file as written (the report shows it; results/<study>/ keeps it)
    base: Config
    variants: dict[str, dict[str, Any]]
    study: StudyConfig
    runtime: RuntimeConfig
    report: ReportConfig
    tuning: dict[str, tuple[str, ...]]
    comparisons: dict[str, ComparisonConfig] = field(default_factory=dict)
    claims: dict[str, ClaimConfig] = field(default_factory=dict)
    _merged: dict[str, Config] = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> list[str]:
        """The variants this study runs, in table order."""
        return list(self.study.rows) or list(self.variants)

    @property
    def row_tuning(self) -> dict[str, tuple[str, ...]]:
        """The tuning groups whose members all run in this study; a member run without the rest of
        its grid is a row of its own."""
        rows = set(self.rows)
        return {g: m for g, m in self.tuning.items() if set(m) <= rows}

    def check_unchanged(self) -> None:
        """Stop before writing outputs if the file changed while the stage ran (another `dvc exp
        run` in the same workspace rewrites params.yaml): the outputs would be recorded under
        parameters they were not computed with."""
        try:
            now = self.path.read_text()
        except OSError:
            now = None
        if now != self.text:
            raise ConfigError(f"{self.path} changed while this stage ran (another `dvc exp run` in this "
                              "workspace?); nothing was written. Run experiments side by side with "
                              "`dvc exp run --queue` and `dvc queue start`, or with `--temp`")

    def config(self, variant: str | None = None) -> Config:
        if variant is None:
            return self.base
        if variant not in self._merged:
            raise ConfigError(f"variants.{variant}: no such variant in {self.path}; "
                              f"known: {', '.join(self.variants) or 'none'}")
        return self._merged[variant]


def load_params(path: Path | str) -> Params:
    """Read params.yaml once and check all of it: a bad key, value or variant stops the first
    stage that runs, before any work, with one line naming the file and the key."""
    path = Path(path)
    text, raw = _read(path)
    try:
        variants = _variants(raw.get("variants"))
        plain = {k: v for k, v in raw.items() if k not in SIDE_SECTIONS}
        base = from_dict(plain)
        tuning = _tuning(raw.get("tuning"), list(variants))
        study = _study(raw.get("study"), list(variants))
        runtime = _runtime(raw.get("runtime"))
        report: ReportConfig = _convert(raw.get("report"), ReportConfig, "report")
        known = _known_rows(list(variants), tuning)
        comparisons = _comparisons(raw.get("comparisons"), known)
        claims = _claims(raw.get("claims"), known)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    merged = {}
    for name, override in variants.items():
        try:
            merged[name] = from_dict(_deep_merge(plain, override))
        except ConfigError as exc:
            raise ConfigError(f"{path} (variant {name}): {exc}") from None
    return Params(path=path, text=text, base=base, variants=variants, study=study, runtime=runtime,
                  report=report, tuning=tuning, comparisons=comparisons, claims=claims, _merged=merged)


def load_config(path: Path | str, variant: str | None = None) -> Config:
    """The base configuration of a params file, or `variant`'s (tests and one-off scripts; a
    command reads everything once with `load_params`)."""
    return load_params(path).config(variant)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its parsed mapping."""
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a parameters file")
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    try:
        text = path.read_text()
        values = yaml.safe_load(text) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return text, values


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-friendly form (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))
