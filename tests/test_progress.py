"""The study-level progress line: counted from DVC's own lines, timed against the plan."""

from __future__ import annotations

import pytest
from conftest import shrink, two_rows

from multvae.progress import StudyProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_runs_are_counted_as_dvc_starts_restores_and_skips_them():
    clock = Clock()
    progress = StudyProgress("default", {"train@a-1-0": 10.0, "train@a-2-0": 10.0, "train@b-1-0": 20.0},
                             clock)
    assert progress.line("Running stage 'download':\n") is None  # not a training run
    assert progress.line("Stage 'train@a-1-0' didn't change, skipping\n") is None  # said with the next
    clock.now = 5.0
    assert progress.line("Running stage 'train@a-2-0':\n") == (
        "[study default] 1/3 runs done, 5 s elapsed, about 30 s left, from the plan; training train@a-2-0")
    assert progress.line("[a fold 0 seed 2] epoch 1/2 ...\n") is None
    clock.now = 25.0  # a-2-0 took 20 s against 10 planned: the rest is expected to take twice the plan
    assert progress.line("Running stage 'train@b-1-0':\n") == (
        "[study default] 2/3 runs done, 25 s elapsed, about 40 s left; training train@b-1-0")
    clock.now = 60.0
    assert progress.line("Running stage 'evaluate@a':\n") == "[study default] 3/3 runs done, 60 s elapsed"
    assert progress.end() == "[study default] 3/3 runs done, 60 s elapsed"


def test_a_run_restored_from_the_run_cache_counts_as_done():
    progress = StudyProgress("s", {"train@a-1-0": 100.0}, Clock())
    assert progress.line("Stage 'train@a-1-0' is cached - skipping run, checking out outputs\n") is None
    assert progress.end() == "[study s] 1/1 runs done, 0 s elapsed"


def test_a_run_ends_when_dvc_exits():
    clock = Clock()
    progress = StudyProgress("s", {"train@a-1-0": 100.0, "train@b-1-0": 100.0}, clock)
    progress.line("Running stage 'train@a-1-0':\n")
    clock.now = 3600.0
    assert progress.end() == "[study s] 1/2 runs done, 60 min elapsed, about 60 min left"


@pytest.mark.slow
def test_multvae_run_prints_the_plan_and_a_line_per_training_run(tmp_path, new_project, run):
    def edit(params: dict) -> None:
        shrink(params, tastes=4, heldout_users=40)
        two_rows(params, claims=("relu_worse",))

    project = new_project(tmp_path / "project", edit)
    out = run(["multvae", "run"], project)
    lines = out.splitlines()
    plan = next(i for i, line in enumerate(lines) if line.startswith("[study default] 2 training runs"))
    assert lines[plan].startswith("[study default] 2 training runs, 0 up to date (dvc status); about ")
    assert any(line.startswith("Running stage 'prepare'") for line in lines[:plan])  # the split first
    progress = [line for line in lines if line.startswith("[study default] ") and "runs done" in line]
    assert progress[0].startswith("[study default] 0/2 runs done")
    assert "training train@original-1-0" in progress[0]
    assert "1/2 runs done" in progress[1] and "training train@relu-1-0" in progress[1]
    assert progress[-1].startswith("[study default] 2/2 runs done")
    assert any(line.startswith("[original fold 0 seed 1] epoch") for line in lines)  # the stage's own lines
    again = run(["multvae", "run"], project).splitlines()
    assert any(line.startswith("[study default] 2 training runs, 2 up to date (dvc status); nothing to train")
               for line in again)
    assert [line for line in again if "runs done" in line] == [again[-1]]  # nothing trained: one line
    assert again[-1].startswith("[study default] 2/2 runs done")
