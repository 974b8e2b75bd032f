"""dvc.yaml's `params:` lists against what each stage's code reads: every stage runs on tiny data
with its configuration recording each field it reads, and every field read must be tracked by the
stage (listed, or inside a listed section), so a new parameter cannot change a result that DVC
would not rerun. The deps lists are checked the same way by tests/test_architecture.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import multvae.config
import multvae.model_file
import multvae.params
import multvae.training
from stages.cli import app

REPO = Path(__file__).resolve().parents[1]

# Read by a stage on purpose without being its parameter, each with the reason.
NOT_TRACKED = {
    # The train matrix iterates seeds and folds: each train stage gets its own by name, and
    # tracking the lists would rerun every run when one seed or fold is added.
    "train": {"train.seeds", "data.folds"},
    # Only a fallback label when data/raw/source.json lacks one; download writes the dataset there,
    # and prepare depends on data/raw, so a change of data.dataset reruns it all the same.
    "prepare": {"data.dataset"},
}

_PAUSED = [False]
_SUBCLASSES: dict[type, type] = {}


def _record(self: Any, name: str) -> Any:
    value = object.__getattribute__(self, name)
    if not _PAUSED[0] and name in object.__getattribute__(self, "__dataclass_fields__"):
        prefix, log = object.__getattribute__(self, "_recording")
        if not dataclasses.is_dataclass(value):
            log.add(prefix + name)
    return value


def recording(obj: Any, prefix: str, log: set[str]) -> Any:
    """A copy of the dataclass `obj` (still an instance of its class) that adds the dotted name of
    every field read to `log`."""
    cls = type(obj)
    sub = _SUBCLASSES.setdefault(cls, type(f"Recording{cls.__name__}", (cls,), {"__getattribute__": _record}))
    copy: Any = object.__new__(sub)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = recording(value, f"{prefix}{f.name}.", log)
        object.__setattr__(copy, f.name, value)
    object.__setattr__(copy, "_recording", (prefix, log))
    return copy


def _paused(function):
    """to_dict copies the whole configuration into a model file or a resume key: metadata, not a
    read that decides a result."""
    def wrapper(*args, **kwargs):
        _PAUSED[0] = True
        try:
            return function(*args, **kwargs)
        finally:
            _PAUSED[0] = False
    return wrapper


@pytest.fixture
def reads(monkeypatch) -> set[str]:
    log: set[str] = set()
    load = multvae.params.load_params

    def recorded(path):
        params = load(path)
        merged = {name: recording(cfg, "", log) for name, cfg in params._merged.items()}
        return dataclasses.replace(params, base=recording(params.base, "", log), _merged=merged)

    monkeypatch.setattr(multvae.params, "load_params", recorded)
    for module in (multvae.config, multvae.model_file, multvae.training):
        monkeypatch.setattr(module, "to_dict", _paused(module.to_dict))
    return log


def _stage_params(stage: str) -> list[str]:
    entry = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    listed = (entry.get("do") or entry).get("params") or []
    return [p for p in listed if not str(p).startswith("variants.")]  # a variant's own overrides


def _tracked(key: str, listed: list[str]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in listed)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_params):
    root = tmp_path_factory.mktemp("dvc-params")
    variants = {"original": {}, "relu": {"model": {"activation": "relu"}}}
    (root / "params.yaml").write_text(tiny_params(variants=variants, study={"blends": ["relu"]}))
    return root


def _run(root: Path, *args: str) -> None:
    result = CliRunner().invoke(app, [*args, "-p", str(root / "params.yaml")], catch_exceptions=False)
    assert result.exit_code == 0, result.output


STAGES = {
    "download": lambda r: ("download", "--out", f"{r}/raw", "--no-progress"),
    "prepare": lambda r: ("prepare", "--raw", f"{r}/raw", "--out", f"{r}/prepared",
                          "--stats", f"{r}/stats.json"),
    "train": lambda r: ("train", "relu", "--seed", "98765", "--fold", "0", "--data", f"{r}/prepared",
                        "--models", f"{r}/models", "--logs", f"{r}/dvclive", "--checkpoints", f"{r}/ck"),
    "evaluate": lambda r: ("evaluate", "relu", "--data", f"{r}/prepared", "--models", f"{r}/models",
                           "--metrics", f"{r}/metrics/variants", "--per-user", f"{r}/metrics/per_user"),
    "popularity": lambda r: ("popularity", "--data", f"{r}/prepared", "--metrics",
                             f"{r}/metrics/variants/most_popular.json", "--per-user",
                             f"{r}/metrics/per_user/most_popular.parquet"),
    "ease": lambda r: ("ease", "--data", f"{r}/prepared", "--metrics", f"{r}/metrics/variants/ease.json",
                       "--per-user", f"{r}/metrics/per_user/ease.parquet", "--choice",
                       f"{r}/models/ease/lambda.json"),
    "blend": lambda r: ("blend", "relu", "--data", f"{r}/prepared", "--models", f"{r}/models", "--ease",
                        f"{r}/models/ease/lambda.json", "--metrics", f"{r}/metrics/variants", "--per-user",
                        f"{r}/metrics/per_user"),
    "aggregate": lambda r: (
        "aggregate", "--metrics-dir", f"{r}/metrics/variants", "--per-user-dir", f"{r}/metrics/per_user",
        "--curves-dir", f"{r}/dvclive", "--table", f"{r}/out/table.md", "--csv", f"{r}/out/table.csv",
        "--summary", f"{r}/out/summary.json", "--plots-dir", f"{r}/out", "--training",
        f"{r}/out/training.csv", "--report", f"{r}/out/report.html", "--stats", f"{r}/stats.json",
        "--results-dir", f"{r}/results", "--claims", f"{r}/out/claims.json"),
}


@pytest.mark.parametrize("stage", list(STAGES))  # in pipeline order: each runs on the previous ones' outputs
def test_every_parameter_a_stage_reads_is_tracked_by_it(project, reads, stage):
    _run(project, *STAGES[stage](project))
    listed = _stage_params(stage)
    untracked = sorted(k for k in reads if not _tracked(k, listed) and k not in NOT_TRACKED.get(stage, set()))
    assert not untracked, (f"dvc.yaml stage `{stage}` reads {', '.join(untracked)} but does not list it "
                           "under params: a change would not rerun it")
    assert reads, "nothing was recorded: the recording did not reach the stage"


def test_the_recording_sees_a_read_that_nothing_tracks(reads, project):
    """The check can fail: a field read by the base configuration is recorded."""
    params = multvae.params.load_params(project / "params.yaml")
    _ = params.base.train.batch_size
    assert "train.batch_size" in reads and not _tracked("train.batch_size", ["model", "beta"])
