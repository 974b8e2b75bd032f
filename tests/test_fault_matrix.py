"""Every case of the fault matrix (benchmarks/fault_matrix.py) ends as it should: refused with one
clear line and earlier outputs intact, or accepted with a checked result; none silent, none a
traceback. The matrix is the one docs/faults.md publishes."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _matrix_module():
    spec = importlib.util.spec_from_file_location("fault_matrix", REPO / "benchmarks" / "fault_matrix.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_fault_ends_in_one_clear_line_or_a_checked_result():
    fm = _matrix_module()
    results = fm.matrix()
    counts = Counter(outcome for _, outcome, _ in results)
    print(dict(counts))
    assert len(results) >= 100
    bad = [(case.group, case.name, outcome, message)
           for case, outcome, message in results if outcome not in fm.GOOD]
    assert not bad, bad


def test_the_published_matrix_has_every_case_of_the_script():
    """docs/faults.md's table lists the script's cases, in its order (refreshed with --markdown)."""
    fm = _matrix_module()
    page = (REPO / "docs" / "faults.md").read_text()
    block = fm.BLOCK.search(page)
    assert block, "docs/faults.md has no fault-matrix block"
    rows = [line.split(" | ")[1] for line in block.group(0).splitlines() if line.startswith("| ") and
            not line.startswith("| group")]
    assert rows == [case.name.replace("|", "/") for case in fm.cases()]
