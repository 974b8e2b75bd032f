"""Every number in the docs' prose is tied to where it comes from (docs/numbers.yaml): a committed
file that still says it, or a measurement, citation or definition that says where. A number
changed on the page, or in its file, fails here."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from multvae.doc_numbers import agrees, load_registry, numbers, problems

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES)
def test_every_number_in_the_prose_has_its_source(page):
    registry = load_registry(REPO)
    assert problems(page, (REPO / page).read_text(), registry, REPO) == []


def test_numbers_are_found_in_prose_only():
    text = ("A gain of +0.0156 [+0.0142, +0.0171] over 6,034 users, 5.3% of runs, 1.1e-7 apart, in 3 seeds.\n"
            "<!-- table: results/x/table.md -->\n| 0.9999 |\n<!-- end table -->\n"
            "```bash\nrun --epochs 200\n```\nSee `train.epochs: 300`, [ML-20M](https://x.org/ml-20m/2019), "
            "torch 2.13.0 on ML-1M.\n")
    found = numbers(text)
    assert found[:6] == ["+0.0156", "+0.0142", "+0.0171", "6,034", "5.3%", "1.1e-7"]
    assert "0.9999" not in found and "200" not in found and "300" not in found and "2019" not in found
    assert "3" not in found and "1" not in found and "20" not in found  # small counts, names like ML-1M


@pytest.mark.parametrize("token, value, ok", [
    ("0.3982", 0.39816862, True), ("0.3982", 0.39826, False), ("+0.0156", 0.015619, True),
    ("−0.0264", -0.026406, True), ("6,034", 6034, True), ("6,034", 6035, False), ("5.3%", 5.31, True),
    ("1.1e-7", 1.1e-7, True)])
def test_a_number_agrees_with_its_value_as_printed(token, value, ok):
    assert agrees(token, value) is ok


def test_a_planted_stale_number_fails(tmp_path):
    """A number changed on the page, or changed in its source file, is reported."""
    registry = load_registry(REPO)
    page = "README.md"
    text = (REPO / page).read_text()
    sourced = [t for t, e in (registry.get(page) or {}).items()
               if "file" in e and e["file"].endswith((".csv", ".json")) and t in numbers(text)]
    assert sourced, "README.md has numbers read from committed files"
    token = sourced[0]
    planted = text.replace(token, token[:-1] + str((int(token[-1]) + 1) % 10))
    assert any(token[:-1] in p and "not in" in p for p in problems(page, planted, registry, REPO))
    # the same page against a results folder whose file now holds another value
    entry = registry[page][token]
    shutil.copytree(REPO / "results", tmp_path / "results")
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    path = tmp_path / entry["file"]
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        frame.loc[frame["variant"] == entry["row"], entry["column"]] += 1.5
        frame.to_csv(path, index=False)
    else:
        data = json.loads(path.read_text())
        node = data
        *parents, last = entry["key"].split(".")
        for part in parents:
            node = node[part]
        node[last] = node[last] + 1.5
        path.write_text(json.dumps(data))
    assert any(f"{token}, but {entry['file']} says" in p for p in problems(page, text, registry, tmp_path))


def test_the_docs_read_in_at_most_12000_words_of_prose():
    """README and docs/, less generated tables and code blocks: what a newcomer reads."""
    words = 0
    for page in PAGES:
        generated = r"<!-- (?:table|fault-matrix)[^>]*-->.*?<!-- end [^>]*-->"
        text = re.sub(generated, "", (REPO / page).read_text(), flags=re.S)
        words += len(re.sub(r"```.*?```", "", text, flags=re.S).split())
    print(f"{words} words of prose")
    assert words <= 12_000, words
