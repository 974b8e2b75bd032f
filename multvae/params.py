"""params.yaml as a whole: the base sections, the variant catalogue, the study that runs, and the
sections that name rows (tuning groups, blends, comparisons, claims, labels), read once per command.

Each section's values are checked by multvae.config's schema; here every name a section uses is
checked against the catalogue and every metric against `eval.ks`, so a reference to something no
study can compute stops the first stage, and one that this study merely does not run is named by
`Params.not_run` (aggregate prints it and the table's legend lists it). The code keeps no default
values: conf/config.yaml holds them and params.yaml, their composition, states every parameter.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field
from pydantic.dataclasses import dataclass

from multvae.config import (
    BASELINES,
    BEST_BASELINE,
    BLEND_SUFFIX,
    CONTROL_BLEND,
    EVERY_VAE_ROW,
    SCHEMA,
    ClaimConfig,
    ComparisonConfig,
    Config,
    ConfigError,
    Name,
    ReportConfig,
    RuntimeConfig,
    StudyConfig,
    Unique,
    dotted_key,
    from_dict,
    validate,
)

# Top-level sections of params.yaml that are not part of a result's configuration: `runtime`
# (execution settings), `report` (display labels), `tuning` (which grid point the table shows),
# `study` (which rows run), `comparisons` and `claims` (what the table tests) are read on their
# own, `variants` is merged.
SIDE_SECTIONS = ("variants", "runtime", "report", "tuning", "study", "comparisons", "claims")
# What a variant may change: what its own train and evaluate stages compute. The data, the
# evaluation and the baselines are shared by every row, so an override there would be ignored.
VARIANT_SECTIONS = ("model", "beta", "optim", "train")
# Where the defaults live: the only place a value is written when no study changes it.
DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "conf" / "config.yaml"


@dataclass(frozen=True, config=SCHEMA)
class ParamsFile:
    """The whole of params.yaml: every section required, nothing else allowed."""

    data: dict[str, Any]  # validated as Config with the other base sections (and per variant)
    model: dict[str, Any]
    beta: dict[str, Any]
    optim: dict[str, Any]
    train: dict[str, Any]
    eval: dict[str, Any]
    baselines: dict[str, Any]
    runtime: RuntimeConfig
    report: ReportConfig
    tuning: dict[Name, Annotated[tuple[Name, ...], Field(min_length=1), Unique]]
    variants: dict[Name, dict[str, Any] | None]
    study: StudyConfig
    comparisons: dict[Name, ComparisonConfig]
    claims: dict[Name, ClaimConfig]



# --- cross-references: every name a section uses, checked against the catalogue -------------------

def _known_rows(variants: list[str], tuning: dict[str, tuple[str, ...]]) -> set[str]:
    """Names a comparison, claim or label may use: the catalogue's, whether or not this study runs
    them (`Params.not_run` names those a study leaves out)."""
    return {*variants, *tuning, *BASELINES, CONTROL_BLEND, *(v + BLEND_SUFFIX for v in variants)}


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _check_variants(variants: dict[str, dict[str, Any] | None]) -> None:
    for name, override in variants.items():
        _require(name not in BASELINES, f"variants.{name}",
                 f"the name of a baseline ({', '.join(BASELINES)}); choose another")
        for section, values in (override or {}).items():
            key = dotted_key(("variants", name, section))
            _require(section in VARIANT_SECTIONS, key,
                     f"a variant may override only {', '.join(VARIANT_SECTIONS)} (what its own train and "
                     f"evaluate stages compute); {section!r} is shared by every row or unknown")
            _require(isinstance(values, dict), key, f"expected a mapping of overrides, got {values!r}")
        _require("seeds" not in ((override or {}).get("train") or {}), f"variants.{name}.train.seeds",
                 "the seeds are shared by every variant (dvc.yaml trains each variant x seed); set "
                 "train.seeds instead")


def _check_references(file: ParamsFile, ks: tuple[int, ...]) -> None:
    variants = list(file.variants)
    for group, members in file.tuning.items():
        _require(group not in variants and group not in BASELINES, f"tuning.{group}",
                 "a group may not be named like a variant or a baseline")
        blend = [m not in variants and m.removesuffix(BLEND_SUFFIX) in variants for m in members]
        unknown = [m for m in members if m not in variants and m.removesuffix(BLEND_SUFFIX) not in variants]
        _require(not unknown, f"tuning.{group}",
                 f"members must be variants of the `variants:` section or their blends "
                 f"(<variant>{BLEND_SUFFIX}); unknown: {', '.join(unknown)}")
        _require(len(set(blend)) == 1, f"tuning.{group}",
                 "members must be all variants or all blends: a group's choice compares like with like")
    study = file.study
    unknown = [r for r in study.rows if r not in variants]
    _require(not unknown, "study.rows", f"not in the `variants:` catalogue: {', '.join(unknown)}")
    outside = [b for b in study.blends if b not in study.rows]
    _require(not outside, "study.blends", f"each must be a row of the study; not rows: {', '.join(outside)}")
    clash = [b + BLEND_SUFFIX for b in study.blends if b + BLEND_SUFFIX in variants]
    _require(not clash, "study.blends", f"the blend's row name is already a variant: {', '.join(clash)}")
    known = _known_rows(variants, file.tuning)
    computed = {f"{kind}@{k}" for kind in ("ndcg", "recall") for k in ks}

    def metric(value: str | None, key: str) -> None:
        _require(value is None or value in computed, key,
                 f"{value} is not computed: eval.ks is {list(ks)}; add its cut-off to eval.ks or change "
                 "the metric")

    for name, family in file.comparisons.items():
        where = f"comparisons.{name}"
        _require(family.reference in known | {BEST_BASELINE}, f"{where}.reference",
                 f"expected a variant, tuning group, baseline or {BEST_BASELINE}, got {family.reference!r}")
        unknown = [r for r in family.rows if r not in known | {EVERY_VAE_ROW}]
        _require(not unknown, f"{where}.rows",
                 f"expected variants, tuning groups or baselines (or '{EVERY_VAE_ROW}': every Mult-VAE row); "
                 f"unknown: {', '.join(unknown)}")
        metric(family.metric, f"{where}.metric")
    for name, claim in file.claims.items():
        for part in ("row", "reference"):
            _require(getattr(claim, part) in known, f"claims.{name}.{part}",
                     f"expected a variant, tuning group, baseline or blend, got {getattr(claim, part)!r}")
        metric(claim.metric, f"claims.{name}.metric")
    by_label: dict[str, str] = {}
    for name, text in file.report.labels.items():
        _require(text not in by_label, f"report.labels.{name}",
                 f"{text!r} is also {by_label.get(text)}'s label; two rows of a table need two names")
        by_label[text] = name


@dataclasses.dataclass(frozen=True)
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
        return list(self.study.rows)

    @property
    def blend_rows(self) -> list[str]:
        """The blends this study computes: one per row of study.blends."""
        return [b + BLEND_SUFFIX for b in self.study.blends]

    @property
    def row_tuning(self) -> dict[str, tuple[str, ...]]:
        """The tuning groups whose members all run in this study (variants, or blends); a member run
        without the rest of its grid is a row of its own (`not_run` says so)."""
        rows = {*self.rows, *self.blend_rows}
        return {g: m for g, m in self.tuning.items() if set(m) <= rows}

    def not_run(self) -> list[str]:
        """One line per comparison, claim or tuning group that names something this study does not
        run, and one for labels that name nothing in the catalogue (a misspelt label leaves its row
        under its raw name): aggregate prints them and the table's legend lists them, so none
        vanishes unsaid."""
        rows = {*self.rows, *self.blend_rows}
        present = {*rows, *self.row_tuning, *BASELINES, CONTROL_BLEND}
        lines = []
        for group, members in self.tuning.items():
            run = [m for m in members if m in rows]
            if run and len(run) < len(members):
                lines.append(f"tuning group {group}: {len(run)} of its {len(members)} members run "
                             f"({', '.join(run)}), "
                             "each a row of its own")
        for name, family in self.comparisons.items():
            missing = [n for n in (family.reference,) if n not in present | {BEST_BASELINE}]
            rows_run = [r for r in family.rows if r == EVERY_VAE_ROW or r in present]
            if missing or not rows_run:
                what = missing or list(family.rows)
                lines.append(f"comparison family {name}: {', '.join(what)} not run in this study")
        for name, claim in self.claims.items():
            missing = [n for n in (claim.row, claim.reference) if n not in present]
            if missing:
                lines.append(f"claim {name}: {', '.join(missing)} not run in this study")
        known = _known_rows(list(self.variants), self.tuning)
        stray = [n for n in self.report.labels if n not in known]
        if stray:
            lines.append(f"report.labels name nothing in the catalogue: {', '.join(stray)}")
        return lines

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


def parse(raw: dict[str, Any]) -> tuple[Config, ParamsFile, dict[str, Config]]:
    """The whole mapping checked: every section against the schema, every variant's merged
    configuration, every cross-reference. Raises ConfigError naming the key."""
    file = typing.cast(ParamsFile, validate(ParamsFile, raw))
    plain = {k: v for k, v in raw.items() if k not in SIDE_SECTIONS}
    base = from_dict(plain)
    _check_variants(file.variants)
    _check_references(file, base.eval.ks)
    configs = {}
    for name, override in file.variants.items():
        configs[name] = typing.cast(Config, validate(Config, merged(plain, override or {}),
                                                      f"variants.{name}."))
    return base, file, configs


def load_params(path: Path | str) -> Params:
    """Read params.yaml once and check all of it: a bad key, value or variant stops the first
    stage that runs, before any work, with one line naming the file and the key."""
    path = Path(path)
    text, raw = _read(path)
    try:
        base, file, merged = parse(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Params(path=path, text=text, base=base,
                  variants={n: dict(o or {}) for n, o in file.variants.items()}, study=file.study,
                  runtime=file.runtime, report=file.report, tuning=dict(file.tuning),
                  comparisons=dict(file.comparisons), claims=dict(file.claims), _merged=merged)


def load_config(path: Path | str, variant: str | None = None) -> Config:
    """The base configuration of a params file, or `variant`'s (tests and one-off scripts; a
    command reads everything once with `load_params`)."""
    return load_params(path).config(variant)


@functools.cache
def defaults() -> tuple[Config, RuntimeConfig]:
    """conf/config.yaml's base configuration and runtime: what tests and tools start from (the
    code has no defaults of its own to disagree with it)."""
    _, raw = _read(DEFAULTS_FILE)
    try:
        base = from_dict({k: v for k, v in raw.items() if k not in SIDE_SECTIONS and k != "defaults"})
        runtime = typing.cast(RuntimeConfig, validate(RuntimeConfig, raw.get("runtime"), "runtime."))
    except ConfigError as exc:
        raise ConfigError(f"{DEFAULTS_FILE}: {exc}") from None
    return base, runtime


def overlay_defaults(partial: dict[str, Any]) -> dict[str, Any]:
    """A whole params mapping written from a few keys, for tests and tools (never for reading
    params.yaml, which must state everything): conf/config.yaml's sections with `partial` laid over
    them, as Hydra composes a study file. `variants`, `tuning`, `comparisons`, `claims` and `report`
    given are taken whole; when `variants` is given, the others not given are emptied (they name the
    catalogue's rows) and labels keep the known names. The study runs every variant unless `study`
    says otherwise."""
    conf = read_yaml(DEFAULTS_FILE)
    conf.pop("defaults", None)
    whole = ("variants", "tuning", "comparisons", "claims", "report")
    if "variants" in partial:
        for name in ("tuning", "comparisons", "claims"):
            conf[name] = {}
    out = merged(conf, {k: v for k, v in partial.items() if k not in whole})
    out.update({k: copy.deepcopy(v) for k, v in partial.items() if k in whole})
    if "report" not in partial:
        known = _known_rows(list(out["variants"]), out["tuning"])
        out["report"] = {"labels": {k: v for k, v in out["report"]["labels"].items() if k in known}}
    out["study"] = {"name": "default", "rows": list(out["variants"]), "blends": [],
                    **(partial.get("study") or {})}
    return out


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`, mapping by mapping (a copy; neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key written twice in one mapping (plain YAML keeps the last
    one without a word, so the first value would be silently ignored)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.2's booleans only: PyYAML (YAML 1.1) reads yes/no/on/off as booleans where DVC's own reader
# (YAML 1.2) sees strings, so `-S`, `dvc params diff` and the stages would disagree on the value.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping, duplicate keys refused; ConfigError names the file."""
    return _read(path)[1]


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its parsed mapping."""
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a parameters file")
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    try:
        text = path.read_text()
        values = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return text, values
