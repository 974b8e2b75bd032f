"""A study's progress across its training runs, read from what `dvc repro` prints as it goes.

Each train stage is one run. DVC says when it starts one ("Running stage 'train@…'"), restores one
from its run-cache ("Stage 'train@…' is cached - skipping run") or finds one up to date ("Stage
'train@…' didn't change"); a run ends when the next stage starts or DVC exits. The time left is
the plan's estimate for the runs still to train, scaled by how the finished runs compared with
their own estimates; without a plan (the data's shape unknown), the mean time of the finished runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from multvae.plan import duration

_RUNNING = re.compile(r"^Running stage '([^']+)'")
_SKIPPED = re.compile(r"^Stage '([^']+)' (?:is cached|didn't change)")


@dataclass
class StudyProgress:
    """`estimates`: each train stage of the study and its planned seconds (all equal, and `planned`
    False, where there is no plan); `clock`: monotonic time."""

    study: str
    estimates: Mapping[str, float]
    clock: Callable[[], float]
    started: float | None = None  # when the study started (default: now)
    planned_ahead: bool = True
    done: set[str] = field(default_factory=set, init=False)
    running: str | None = field(default=None, init=False)
    since: float = field(default=0.0, init=False)
    trained: float = field(default=0.0, init=False)  # seconds the finished runs took
    planned: float = field(default=0.0, init=False)  # the plan's seconds for those runs

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def _finish_running(self, now: float) -> None:
        if self.running is not None:
            self.done.add(self.running)
            self.trained += now - self.since
            self.planned += self.estimates[self.running]
            self.running = None

    def line(self, text: str) -> str | None:
        """Read one line of DVC's output; a progress line when a training run starts or ends."""
        now = self.clock()
        if (started := _RUNNING.match(text)) is not None:
            finished = self.running is not None
            self._finish_running(now)
            if started.group(1) in self.estimates:
                self.running, self.since = started.group(1), now
                return self.status(now)
            return self.status(now) if finished else None
        elif (skipped := _SKIPPED.match(text)) is not None and skipped.group(1) in self.estimates:
            self.done.add(skipped.group(1))  # counted; said with the next run or at the end
        return None

    def end(self) -> str:
        """DVC exited: the run in progress, if any, ended with it."""
        now = self.clock()
        self._finish_running(now)
        return self.status(now)

    def remaining(self) -> float:
        """Seconds left: the plan's estimate for the runs not yet done, corrected by the ratio of
        measured to planned time over the runs finished so far."""
        left = sum(s for stage, s in self.estimates.items() if stage not in self.done)
        return left * (self.trained / self.planned if self.planned > 0 else 1.0)

    def status(self, now: float) -> str:
        total, elapsed = len(self.estimates), now - (self.started or 0.0)
        head = f"[study {self.study}] {len(self.done)}/{total} runs done, {_span(elapsed)} elapsed"
        if len(self.done) == total:
            return head
        now_running = f"; training {self.running}" if self.running else ""
        if self.planned > 0:
            left = f"about {_span(self.remaining())} left"
        elif self.planned_ahead:
            left = f"about {_span(self.remaining())} left, from the plan"
        else:
            left = "time left known once a run has trained"
        return f"{head}, {left}{now_running}"


def _span(seconds: float) -> str:
    """Seconds while they are few, then the plan's units."""
    return f"{seconds:.0f} s" if seconds < 90 else duration(seconds)
