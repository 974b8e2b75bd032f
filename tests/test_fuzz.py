"""Property-based tests (Hypothesis): generated params mappings and ratings files are either refused
with one line naming the key or the file, or give a result whose invariants hold. No list of cases:
the inputs come from strategies, a small budget in the quick suite and a larger one in the slow
suite (HYPOTHESIS_PROFILE=slow, set by the slow test below; its run prints the number of cases)."""

from __future__ import annotations

import ast
import copy
import dataclasses
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multvae.config import ConfigError
from multvae.errors import MultVAEError
from multvae.params import Params, parse
from multvae.ratings import RATING_RANGE, read_interactions

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())

settings.register_profile("quick", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("slow", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a parsed YAML value, lists' items included."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


PATHS = _paths(PARAMS)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**15), 10**15),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["original", "relu", "ease", "best_baseline", "*", "ndcg@100", "recall@7", "ml-1m",
                     "synthetic", "auto", "adam", "cyclical", "1e400", ".inf", "0", "-1", "a b", "x.y"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=6), SCALARS,
                                                                          max_size=3))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict, str, tuple]:
    """params.yaml with one to three edits: a value replaced, a key removed, or a key added."""
    raw = copy.deepcopy(PARAMS)
    last: tuple = ()
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = raw
        try:
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]]  # noqa: B018 - the path still exists after earlier edits
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(parent, (dict, list)):
            continue
        action = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "remove" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(SCALARS)
        last = path
    return raw, ".".join(str(p) for p in last), last


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _key_resolves(key: str, raw: dict) -> bool:
    """The error's dotted key (indices and odd keys quoted in brackets) names a top-level key of
    the file, or one of the file's sections."""
    if key.startswith("["):  # a quoted key: the first bracket that closes a Python literal
        for end in (i for i, ch in enumerate(key) if ch == "]"):
            try:
                first = ast.literal_eval(key[1:end])
                break
            except (ValueError, SyntaxError):
                continue
        else:
            return False
    else:
        first = re.split(r"[.\[]", key, maxsplit=1)[0]
    return first in PARAMS or first in raw


@given(mutated())
def test_a_generated_params_mapping_is_refused_by_key_or_loads_whole(case):
    raw, _, _ = case
    try:
        base, file, merged = parse(raw)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 2000
        key = message.split(": ", 1)[0]
        assert _key_resolves(key, raw), message
        return
    # Accepted: every number finite, every row a variant with a whole configuration, every name a
    # comparison or claim uses in the catalogue, every metric computed.
    assert _finite(base) and all(_finite(c) for c in merged.values())
    assert file.study.rows and set(file.study.rows) <= set(merged)
    assert set(file.study.blends) <= set(file.study.rows)
    ks = set(base.eval.ks)
    for claim in file.claims.values():
        assert claim.metric is None or int(claim.metric.split("@")[1]) in ks
    params = Params(path=Path("params.yaml"), text="", base=base, variants={}, study=file.study,
                    runtime=file.runtime, report=file.report, tuning=dict(file.tuning),
                    comparisons=dict(file.comparisons), claims=dict(file.claims), _merged=merged)
    for line in params.not_run():
        assert "\n" not in line


@given(st.sampled_from([p for p in PATHS if isinstance(p[-1], str)]), st.sampled_from(
    [float("inf"), float("-inf"), float("nan")]))
def test_a_non_finite_number_anywhere_is_refused_naming_its_key(path, value):
    raw = copy.deepcopy(PARAMS)
    parent = raw
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert str(caught.value).split(": ", 1)[0].startswith(path[0])


def test_a_key_written_twice_is_refused(tmp_path):
    from multvae.params import load_params

    text = (REPO / "params.yaml").read_text()
    text = text.replace("  latent_dim: 200\n", "  latent_dim: 200\n  latent_dim: 300\n")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"params\.yaml: not valid YAML: .*'latent_dim' appears twice"):
        load_params(tmp_path / "params.yaml")
    # YAML 1.2's booleans, as DVC reads the file: `no` is a string, so a boolean key refuses it.
    text = (REPO / "params.yaml").read_text().replace("  compile: false\n", "  compile: no\n")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"runtime\.compile: expected a valid boolean, got 'no'"):
        load_params(tmp_path / "params.yaml")
    # YAML's merge key is not a repeat: the mapping's own keys override the merged ones.
    text = (REPO / "params.yaml").read_text().replace("\nbeta:\n", "\nbeta: &beta\n", 1)
    merge = "  relu:\n    beta:\n      <<: *beta\n      cap: 0.3\n    model:\n"
    text = text.replace("  relu:\n    model:\n", merge, 1)
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml").config("relu").beta.cap == 0.3


# --- ratings files --------------------------------------------------------------------------------

CELLS = st.one_of(st.integers(-5, 300), st.floats(-1, 6), st.just(float("nan")), st.sampled_from(
    ["", "NA", "x", "1e3", "4.5", " 3", "\"", "1,2", "٣", "0x10", "inf", "-0"]))


@st.composite
def ratings_files(draw: st.DrawFn) -> str:
    """A CSV of MovieLens's four columns (or a mangled header), rows of mostly valid cells."""
    header = draw(st.sampled_from(["userId,movieId,rating,timestamp", "userId,movieId,rating",
                                   "user,item,rating,timestamp", "userId,movieId,rating,timestamp,extra",
                                   "movieId,userId,rating,timestamp", ""]))
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        valid: list[object] = [draw(st.integers(1, 30)), draw(st.integers(1, 40)), draw(st.sampled_from(
            [0.5, 1, 2.5, 3, 4, 4.5, 5])), draw(st.integers(0, 2_000_000_000))]
        if draw(st.booleans()):
            valid[draw(st.integers(0, 3))] = draw(CELLS)
        rows.append(",".join(str(v) for v in valid))
    return "\n".join([header, *rows]) + ("\n" if draw(st.booleans()) else "")


@given(ratings_files())
def test_a_generated_ratings_file_is_refused_by_name_or_read_with_its_invariants(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("ratings") / "ratings.csv"
    path.write_text(text)
    try:
        ratings, _ = read_interactions(path)
    except MultVAEError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
        return
    assert list(ratings.columns[:3]) == ["userId", "movieId", "rating"]
    assert len(ratings) >= 1
    for column in ("userId", "movieId"):
        assert pd.api.types.is_integer_dtype(ratings[column])
    values = ratings["rating"].to_numpy(np.float64)
    assert np.isfinite(values).all()
    assert (values >= RATING_RANGE[0]).all() and (values <= RATING_RANGE[1]).all()


@pytest.mark.slow
def test_the_slow_suite_runs_a_larger_budget():
    """The two generated-input tests at 3,000 cases each; prints how many ran."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
         str(Path(__file__)), "-k", "generated", "-m", "not slow"],
        env={**os.environ, "HYPOTHESIS_PROFILE": "slow"}, capture_output=True, text=True, cwd=REPO)
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    runs = [int(n) for n in re.findall(r"(\d+) passing, 0 failing", done.stdout)]
    assert len(runs) == 2 and all(n >= 1000 for n in runs), runs


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["eval"].update(ks=[20, 100]),
     r"claims\.relu_better_recall_50\.metric: recall@50 is not computed"),
    (lambda p: p["data"].update(dataset="synthetic"), r"data\.source: .* is set but dataset is synthetic"),
    (lambda p: p["baselines"].update(ease_lambdas=[float("inf")]),
     r"baselines\.ease_lambdas\[0\]: expected a finite"),
    (lambda p: p["study"].update(rows=[]), r"study\.rows: expected at least 1 value"),
    (lambda p: p["train"].update(seeds=[-1]), r"train\.seeds\[0\]: expected greater than or equal to 0"),
    (lambda p: p["comparisons"]["vs_original"].update(reference="orignal"),
     r"comparisons\.vs_original\.reference"),
    (lambda p: p["tuning"].update(g=["nope"]), r"tuning\.g: members must be variants"),
    (lambda p: p["tuning"].update(g=["nope_ease"]), r"tuning\.g: members must be .* unknown: nope_ease"),
    (lambda p: p["tuning"].update(g=["original", "relu_ease"]), r"tuning\.g: members must be all variants"),
    (lambda p: p["model"].update(latent_dim="200"),
     r"model\.latent_dim: expected a valid integer, got '200'"),
    (lambda p: p["optim"].update(decoder_dropout=1), r"optim\.decoder_dropout: expected a valid boolean"),
    (lambda p: p["data"].pop("seed"), r"data\.seed: missing; params\.yaml states every parameter"),
])
def test_each_class_of_silent_input_is_refused_naming_its_key(edit, message):
    """The classes an outside trial found passing without a word, one example each (the generated
    tests above cover the rest): a metric the study does not compute, a label the data contradicts,
    a non-finite grid value, no rows, a typo in a name another section uses."""
    raw = copy.deepcopy(PARAMS)
    edit(raw)
    with pytest.raises(ConfigError, match=message):
        parse(raw)


def test_a_tuning_group_of_blends_is_a_row_only_where_the_study_blends_every_member(tmp_path):
    """A group may choose among blends (each fold picks the blend with the best validation score):
    it stands as a row where every member is blended, and is named as not run where one is not."""
    from multvae.params import load_params

    raw = copy.deepcopy(PARAMS)
    raw["study"].update(rows=["original", "relu"], blends=["original", "relu"])
    raw["tuning"]["blended"] = ["original_ease", "relu_ease"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_params(path).row_tuning["blended"] == ("original_ease", "relu_ease")
    raw["study"]["blends"] = ["original"]
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path)
    assert "blended" not in params.row_tuning
    assert any(line.startswith("tuning group blended: 1 of its 2 members run") for line in params.not_run())
