"""kill -9 at several points of every stage, then a rerun: no temporaries left, and the same
outputs as a run that was never interrupted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

# The tiny params (tests/conftest.py), 8 epochs, with a smaller bootstrap and EASE grid.
SECTIONS = {"baselines": {"ease_lambdas": [10.0, 100.0]}}
# Each stage's command and the outputs it owns, in pipeline order.
STAGES = {
    "download": (["download", "--no-progress"], ["data/raw"]),
    "prepare": (["prepare"], ["data/prepared", "data/stats.json"]),
    "train": (["train", "original", "--seed", "98765"], ["models/original", "dvclive/original"]),
    "evaluate": (["evaluate", "original"], ["metrics/variants/original.json",
                                            "metrics/per_user/original.parquet"]),
    "popularity": (["popularity"], ["metrics/variants/most_popular.json",
                                    "metrics/per_user/most_popular.parquet"]),
    "ease": (["ease"], ["metrics/variants/ease.json", "metrics/per_user/ease.parquet",
                        "models/ease/lambda.json"]),
    "aggregate": (["aggregate"], ["metrics/table.csv", "metrics/table.md"]),
}
FRACTIONS = (0.2, 0.5, 0.85)  # of the stage's uninterrupted wall time: early, middle, near the end
EXE = str(Path(sys.executable).with_name("multvae"))


def _run(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return time.perf_counter() - start


def _kill_after(args: list[str], cwd: Path, seconds: float) -> None:
    proc = subprocess.Popen([EXE, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    proc.kill()  # SIGKILL: no cleanup handler runs
    proc.wait()


def _content(path: Path) -> object:
    """What must be equal between the two runs (wall-clock columns aside)."""
    if path.is_dir():
        return {p.relative_to(path).as_posix(): _content(p) for p in sorted(path.rglob("*")) if p.is_file()}
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_json(orient="split", double_precision=15)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".pt":
        import torch

        saved = torch.load(path, weights_only=True)
        return {k: v.tolist() for k, v in saved["state_dict"].items()}
    if path.suffix == ".tsv":  # DVCLive's per-epoch log
        return path.read_text()
    if path.suffix == ".csv":
        frame = pd.read_csv(path).drop(columns=["seconds"], errors="ignore")
        return frame.to_json(orient="split", double_precision=15)  # NaN as null: comparable
    return path.read_bytes()


def test_every_stage_killed_and_rerun_ends_as_an_uninterrupted_run(tmp_path, tiny_params):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for root in (straight, killed):
        root.mkdir()
        (root / "params.yaml").write_text(tiny_params(**SECTIONS))
    durations = {name: _run(args, straight) for name, (args, _) in STAGES.items()}
    for name, (args, outputs) in STAGES.items():
        for fraction in FRACTIONS:
            _kill_after(args, killed, durations[name] * fraction)
        _run(args, killed)
        for output in outputs:
            assert _content(killed / output) == _content(straight / output), f"{name}: {output} differs"
    leftovers = [p for p in killed.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.parts[-1]]
    assert leftovers == [], leftovers
    assert [p for p in (killed / ".checkpoints").rglob("*") if p.is_file()] == []
    shutil.rmtree(tmp_path)
