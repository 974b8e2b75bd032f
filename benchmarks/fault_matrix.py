"""The fault matrix: bad inputs and faults thrown at every command, each outcome classified.

A small workspace (synthetic ratings as a CSV file, every stage run once) is copied for each case;
the case damages one thing, runs one `multvae` command in it, and the outcome is one of:
  clear       refused with exit 1 and one line "error: …", every earlier output unchanged
  accepted    a valid (if unusual) input, run to exit 0, checked where the case says how
  silent      exit 0 on input that should have been refused: a wrong result without a word
  traceback   an exception escaped the command
  unclear     exit 1, but not as one "error:" line
  damaged     refused, but an output written before the case was changed or removed
  false alarm a valid input refused

    python benchmarks/fault_matrix.py                       # print the matrix and the counts
    python benchmarks/fault_matrix.py --markdown docs/faults.md   # also refresh the page's table

tests/test_fault_matrix.py runs it and fails on any outcome other than clear or accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gzip
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOOD = ("clear", "accepted")
BLOCK = re.compile(r"(<!-- fault-matrix -->\n).*?(<!-- end fault-matrix -->)", re.S)
PARAMS: dict[str, Any] = {
    "data": {"dataset": "auto", "source": "ratings.csv", "heldout_users": 30},
    "model": {"hidden_dims": [32], "latent_dim": 8},
    "train": {"epochs": 3, "batch_size": 20, "seeds": [1]},
    "baselines": {"ease_lambdas": [10.0, 100.0], "ease_refine": 1, "rp3_alphas": [0.5, 1.0],
                  "rp3_betas": [0.0, 0.3]},
    "runtime": {"device": "cpu", "threads": 1, "checkpoint_seconds": 0},
    # small_latent is in the catalogue but not a row: what a study names without running.
    "variants": {"original": {}, "relu": {"model": {"activation": "relu"}},
                 "small_latent": {"model": {"latent_dim": 4}}},
    "study": {"name": "faults", "rows": ["original", "relu"], "blends": ["original"]},
    "comparisons": {"vs_original": {"reference": "original", "rows": ["*"]}},
    "claims": {"relu_worse": {"row": "relu", "reference": "original", "expect": "worse", "source": "test"}},
}
PIPELINE = [
    ["download", "--no-progress"], ["prepare"],
    ["train", "original", "--seed", "1", "--fold", "0"], ["train", "relu", "--seed", "1", "--fold", "0"],
    ["evaluate", "original"], ["evaluate", "relu"], ["popularity"], ["ease"], ["rp3beta"],
    ["blend", "original"], ["control-blend"], ["aggregate"],
]
MODEL = Path("models/original/fold-0/seed-1.pt")


@dataclass
class Case:
    group: str
    name: str
    command: list[str]
    expect: str  # "refused" or "accepted"
    setup: Callable[[Path], None]
    check: Callable[[Path], bool] | None = None  # for an accepted case: is the result right?
    # Outputs the command rewrites as it goes, by design: a train run's per-epoch log starts empty
    # (as when DVC removes a stage's outputs before running it) and holds the epochs that ran.
    own: tuple[str, ...] = ()


def run(args: list[str]) -> tuple[int, str, BaseException | None]:
    from typer.testing import CliRunner

    from stages.cli import app

    result = CliRunner().invoke(app, args)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stderr, exc


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def snapshot(root: Path) -> dict[str, str]:
    """Hash of every file under the workspace's output folders."""
    out = {}
    for top in ("data", "models", "metrics", "dvclive", "results", "plots", ".checkpoints"):
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and not path.name.endswith((".tmp", ".lock")):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def build_base(root: Path) -> None:
    from multvae.config import SYNTHETIC_PRESETS
    from multvae.params import overlay_defaults
    from multvae.synthetic import generate

    ratings, _ = generate(SYNTHETIC_PRESETS["tiny"])
    ratings.to_csv(root / "ratings.csv", index=False)
    (root / "params.yaml").write_text(yaml.safe_dump(overlay_defaults(PARAMS), sort_keys=False))
    with inside(root):
        for args in PIPELINE:
            code, err, exc = run(args)
            if code != 0 or exc is not None:
                raise SystemExit(f"building the workspace: multvae {' '.join(args)} failed: {err or exc}")


# ---- what the cases change -------------------------------------------------------------------

def set_param(dotted: str, value: Any) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        params = yaml.safe_load((root / "params.yaml").read_text())
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return setup


def add_variant(name: str) -> Callable[[Path], None]:
    """A variant whose name is taken as written (set_param would read its dots as nesting)."""
    def setup(root: Path) -> None:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["variants"][name] = {}
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return setup


def drop_param(dotted: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        params = yaml.safe_load((root / "params.yaml").read_text())
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        del node[last]
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return setup


def write(relative: str, content: bytes | str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / relative
        if path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return setup


def ratings(text: str, name: str = "bad.csv") -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / name).write_text(text)
        set_param("data.source", name)(root)
    return setup


def both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        for step in steps:
            step(root)
    return setup


def nothing(root: Path) -> None:
    pass


def downloaded(root: Path) -> None:
    with inside(root):
        code, err, exc = run(["download", "--no-progress"])
    if code != 0 or exc is not None:
        raise RuntimeError(f"download in a case's set-up: {err or exc}")


def remove(relative: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return setup


def make_dir(relative: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / relative
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        path.mkdir(parents=True)
    return setup


def overwrite_bytes(relative: str, at: float, count: int = 16) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / relative
        data = bytearray(path.read_bytes())
        start = int(len(data) * at)
        data[start:start + count] = bytes((b ^ 0xFF) for b in data[start:start + count])
        path.write_bytes(bytes(data))
    return setup


def truncate(relative: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / relative
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return setup


def copy_file(source: str, target: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        shutil.copyfile(root / source, root / target)
    return setup


def csv_source(rows: list[str], header: str = "userId,movieId,rating,timestamp") -> str:
    return "\n".join([header, *rows]) + "\n"


def base_rows(root: Path) -> list[str]:
    return (root / "ratings.csv").read_text().splitlines()[1:]


def with_rows(change: Callable[[list[str]], list[str]], name: str = "bad.csv") -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        header = (root / "ratings.csv").read_text().splitlines()[0]
        (root / name).write_text("\n".join([header, *change(base_rows(root))]) + "\n")
        set_param("data.source", name)(root)
    return setup


def rewritten(header: str, separator: str) -> Callable[[Path], None]:
    """The source's rows under another header and separator, as bad.csv."""
    def setup(root: Path) -> None:
        rows = [r.replace(",", separator) for r in base_rows(root)]
        (root / "bad.csv").write_text(csv_source(rows, header))
        set_param("data.source", "bad.csv")(root)
    return setup


def gz_truncated(root: Path) -> None:
    data = gzip.compress((root / "ratings.csv").read_bytes())
    (root / "bad.csv.gz").write_bytes(data[: len(data) // 2])
    set_param("data.source", "bad.csv.gz")(root)


def zip_without_ratings(root: Path) -> None:
    with zipfile.ZipFile(root / "bad.zip", "w") as archive:
        archive.writestr("ml-1m/README", "no ratings here")
    set_param("data.source", "bad.zip")(root)


def failing_writes(code: int) -> Callable[[Path], None]:
    """Every output the command puts in place fails with `code`: ENOSPC as on a full disk, EACCES as
    in a folder without write permission (chmod cannot show that to root, who runs CI here)."""
    import errno

    def setup(root: Path) -> None:
        real = os.replace

        def failing(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if os.path.abspath(dst).startswith(str(root)):
                raise OSError(code, os.strerror(code), str(src))
            real(src, dst, *args, **kwargs)

        os.replace = failing  # restored by `run_case`

    assert code in (errno.ENOSPC, errno.EACCES)
    return setup


def other_split(root: Path) -> None:
    """The model stays; the split under it is rebuilt with another seed: a model of other data."""
    set_param("data.seed", 4321)(root)
    with inside(root):
        code, err, exc = run(["prepare"])
    if code != 0 or exc is not None:
        raise RuntimeError(f"rebuilding the split: {err or exc}")


def per_user_missing_a_user(root: Path) -> None:
    import pandas as pd

    path = root / "metrics/per_user/relu.parquet"
    frame = pd.read_parquet(path)
    frame.iloc[1:].to_parquet(path, index=False)


def per_user_other_users(root: Path) -> None:
    import pandas as pd

    path = root / "metrics/per_user/relu.parquet"
    frame = pd.read_parquet(path)
    frame.assign(userId=frame["userId"] + 100_000).to_parquet(path, index=False)


def summary_json_gone_wrong(root: Path) -> None:
    import json

    path = root / "metrics/variants/relu.json"
    summary = json.loads(path.read_text())
    summary["ndcg@100"] = "high"
    path.write_text(json.dumps(summary))


def swap(first: str, second: str) -> Callable[[Path], None]:
    """Two files exchanged: each holds the other's content under its own name."""
    def setup(root: Path) -> None:
        a, b = root / first, root / second
        data = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(data)
    return setup


def edit_json(relative: str, key: str, value: Any, by_hand: bool = False) -> Callable[[Path], None]:
    """One key of a JSON output changed: as a stage run on other inputs would have written it (its
    content hash made anew), or `by_hand` (the hash left as it was)."""
    def setup(root: Path) -> None:
        import json

        from multvae.sealed import KEY, seal

        path = root / relative
        content = json.loads(path.read_text())
        content[key] = value
        path.write_text(json.dumps(content if by_hand or KEY not in content else seal(content)))
    return setup


def shuffled_items(root: Path) -> None:
    """The training table's items reordered: every count the same, the split's content not."""
    import pandas as pd

    path = root / "data/prepared/fold-0/train.parquet"
    frame = pd.read_parquet(path)
    frame.assign(item=frame["item"].to_numpy()[::-1]).to_parquet(path, index=False)


def write_text_yaml(text_edit: Callable[[str], str]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / "params.yaml"
        path.write_text(text_edit(path.read_text()))
    return setup


def failing_after(renames: int) -> Callable[[Path], None]:
    """The first `renames` outputs go into place, then the disk is full: the stage must put the
    ones already in back, not leave a mix of new and old outputs."""
    def setup(root: Path) -> None:
        real = os.replace
        done = [0]

        def failing(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            inside_root = os.path.abspath(dst).startswith(str(root))
            moving_new = ".tmp" in str(src)  # a staged output, not an old one set aside or put back
            if inside_root and moving_new:
                if done[0] >= renames:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
                done[0] += 1
            real(src, dst, *args, **kwargs)

        os.replace = failing  # restored by `run_case`
    return setup


def claims_page_names(line: str) -> Callable[[Path], bool]:
    """The claims' page and the table's legend both name what the study could not check."""
    def check(root: Path) -> bool:
        claims = (root / "results/faults/claims.md").read_text()
        table = (root / "results/faults/table.md").read_text()
        return f"Not checked by this study: {line}" in claims and line.split(": ", 1)[1] in table
    return check


def seed_renamed(root: Path) -> None:
    """relu's results as if trained with seed 7, a seed the study does not run."""
    import json

    from multvae.sealed import seal

    path = root / "metrics/variants/relu.json"
    summary = json.loads(path.read_text())
    summary["seeds"] = {"7": summary["seeds"]["1"]}
    path.write_text(json.dumps(seal(summary)))  # as an evaluate stage of seed 7 would have written it


def table_names(line: str) -> Callable[[Path], bool]:
    """The table's legend names what the study could not show."""
    def check(root: Path) -> bool:
        return line in (root / "results/faults/table.md").read_text()
    return check


def swap_folders(first: str, second: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        a, b, aside = root / first, root / second, root / (first + ".aside")
        a.rename(aside)
        b.rename(a)
        aside.rename(b)
    return setup


def _rerun(*command: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        with inside(root):
            code, err, exc = run(list(command))
        if code != 0 or exc is not None:
            raise RuntimeError(f"{command[0]} in a case's set-up: {err or exc}")

    return setup


_run_blend = _rerun("blend", "original")


def train_rows_removed(root: Path) -> None:
    import pandas as pd

    path = root / "data/prepared/fold-0/train.parquet"
    pd.read_parquet(path).iloc[5:].to_parquet(path, index=False)


HELD: list[int] = []  # lock descriptors a case holds while its command runs; closed by `run_case`


def _locked(root: Path) -> None:
    """Another process training the same run: its lock is held (here, by another descriptor)."""
    import fcntl

    path = root / ".checkpoints/original/fold-0/seed-1.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242")
    fcntl.flock(fd, fcntl.LOCK_EX)
    HELD.append(fd)


# ---- accepted cases: how to tell their results are right ----------------------------------------

def duplicates_counted(root: Path) -> bool:
    import json

    return json.loads((root / "data/raw/source.json").read_text()).get("duplicate_ratings_dropped") == 1


def same_ratings_as_base(root: Path) -> bool:
    import pandas as pd

    return len(pd.read_parquet(root / "data/raw/ratings.parquet")) == len(base_rows(root))


def checkpoint_set_aside(root: Path) -> bool:
    return (root / MODEL).is_file() and any((root / ".checkpoints").rglob("*.unreadable-*"))


def cases() -> list[Case]:
    out: list[Case] = []

    def refused(group: str, name: str, command: list[str], setup: Callable[[Path], None]) -> None:
        out.append(Case(group, name, command, "refused", setup))

    download = ["download", "--no-progress"]
    # params.yaml: every command reads it first; `download` is the first stage of every repro.
    for name, setup in [
        ("params.yaml missing", remove("params.yaml")),
        ("params.yaml is a folder", make_dir("params.yaml")),
        ("params.yaml not YAML", write("params.yaml", "data: [unclosed\n")),
        ("params.yaml a list", write("params.yaml", "- 1\n- 2\n")),
        ("params.yaml binary garbage", write("params.yaml", bytes(range(256)) * 4)),
        ("params.yaml not UTF-8", write("params.yaml", b"data:\n  dataset: \xff\xfe\n")),
        ("unknown top-level key", set_param("trainn", {"epochs": 3})),
        ("unknown key in model", set_param("model.hidden", [32])),
    ]:
        refused("params: file and keys", name, download, setup)
    for dotted, value in [
        ("model.hidden_dims", []), ("model.hidden_dims", [-4]), ("model.hidden_dims", "600"),
        ("model.latent_dim", 0), ("model.dropout", 1.0), ("model.dropout", "half"),
        ("model.activation", "sigmoid"), ("model.prior_weights", [0.5, 0.5]),
        ("beta.method", "linear"), ("beta.cap", -1), ("beta.anneal_fraction", 0),
        ("beta.total_anneal_steps", 0), ("beta.cycles", 0), ("beta.ratio", 1.5), ("beta.gamma", -0.1),
        ("optim.name", "rmsprop"), ("optim.lr", 0), ("optim.lr", "fast"), ("optim.weight_decay", -1),
        ("train.epochs", 0), ("train.epochs", 2.5), ("train.epochs", True), ("train.batch_size", 0),
        ("train.min_updates", -1), ("train.min_updates", "many"),
        ("train.seeds", []), ("train.seeds", [1, 1]), ("train.seeds", ["a"]),
        ("eval.ks", []), ("eval.ks", [0]), ("eval.confidence", 1.0),
        ("data.min_rating", 6), ("data.min_user_positives", 1), ("data.heldout_users", 0),
        ("data.heldout_users", 0.6), ("data.heldout_users", 10.5), ("data.target_fraction", 1),
        ("data.kfold", 0), ("data.folds", [5]), ("data.folds", [0, 0]), ("data.split", "random"),
        ("data.dataset", "ml-5m"), ("data.synthetic.users", 5),
        ("baselines.ease_lambdas", []), ("baselines.ease_lambdas", [-1.0]), ("baselines.ease_refine", 11),
        ("baselines.rp3_alphas", [0.0]), ("baselines.rp3_betas", [2.0]),
        ("baselines.blend_weights", [0.5]), ("baselines.blend_weights", [0.0, 1.5]),
        ("runtime.threads", -1), ("runtime.device", "tpu"), ("runtime.eval_batch_size", 0),
    ]:
        refused("params: values out of range or of the wrong type", f"{dotted}: {value!r}", download,
                set_param(dotted, value))
    refused("params: values out of range or of the wrong type", "data.kfold 3 with a temporal split",
            download, both(set_param("data.kfold", 3), set_param("data.split", "temporal")))
    for name, setup in [
        ("variants not a mapping", set_param("variants", ["original"])),
        ("variant name with a space", add_variant("min rating 3")),
        ("variant name with a dot", add_variant("cap.0.2")),
        ("variant name with a shell character", add_variant("x;rm")),
        ("variant named like a baseline", set_param("variants.ease", {})),
        ("variant overrides data", set_param("variants.relu.data", {"min_rating": 3.0})),
        ("variant overrides eval", set_param("variants.relu.eval", {"ks": [5]})),
        ("variant overrides an unknown key", set_param("variants.relu.model.depth", 3)),
        ("variant overrides the seeds", set_param("variants.relu.train", {"seeds": [7]})),
        ("variant value out of range", set_param("variants.relu.model.dropout", 2.0)),
        ("tuning member unknown", set_param("tuning", {"grid": ["original", "nope"]})),
        ("tuning group named like a variant", set_param("tuning", {"relu": ["original"]})),
        ("study row unknown", set_param("study.rows", ["original", "nope"])),
        ("study rows repeat", set_param("study.rows", ["original", "original"])),
        ("study blend not a row", set_param("study.blends", ["latent_300"])),
        ("study blend named like a variant", both(set_param("study.blends", ["original"]),
                                                  set_param("variants.original_ease", {}))),
        ("study name with a slash", set_param("study.name", "a/b")),
        ("comparison reference unknown", set_param("comparisons.vs_original.reference", "nope")),
        ("comparison row unknown", set_param("comparisons.vs_original.rows", ["nope"])),
        ("comparison metric unknown", set_param("comparisons.vs_original.metric", "map@10")),
        ("claim direction unknown", set_param("claims.relu_worse.expect", "equal")),
        ("claim without a row", drop_param("claims.relu_worse.row")),
        ("claim row is its reference", set_param("claims.relu_worse.row", "original")),
        ("claim unknown key", set_param("claims.relu_worse.sign", "-")),
        ("report labels not a mapping", set_param("report", {"labels": ["a"]})),
    ]:
        refused("params: variants, studies, comparisons, claims", name, download, setup)
    for name, setup in [
        ("no study rows", set_param("study.rows", [])),
        ("a claim on a metric eval.ks does not compute", set_param("claims.relu_worse.metric", "recall@7")),
        ("a comparison on a metric eval.ks does not compute",
         set_param("comparisons.vs_original.metric", "ndcg@7")),
        ("a claim on a row not in the catalogue", set_param("claims.relu_worse.row", "relu2")),
        ("a tuning member misspelt", set_param("tuning", {"grid": ["original", "relux"]})),
        ("two rows given one label", set_param("report.labels.relu", "Original model")),
        ("a YAML 1.1 boolean (no) where DVC reads a string", write_text_yaml(
            lambda t: t.replace("  compile: false\n", "  compile: no\n"))),
    ]:
        refused("params: names the study does not compute", name, download, setup)
    for name, setup in [
        ("synthetic data set with a source file", set_param("data.dataset", "synthetic")),
        ("the source claimed to be ml-1m", set_param("data.dataset", "ml-1m")),
        ("the source claimed to be ml-latest-small", set_param("data.dataset", "ml-latest-small")),
    ]:
        refused("params: a label the data contradicts", name, download, setup)
    for dotted, value in [
        ("baselines.ease_lambdas", [float("inf")]), ("baselines.ease_lambdas", [float("nan")]),
        ("baselines.rp3_alphas", [float("inf")]), ("baselines.blend_weights", [0.0, float("nan")]),
        ("optim.lr", float("inf")), ("beta.cap", float("nan")), ("eval.confidence", float("nan")),
        ("data.heldout_users", float("inf")), ("train.seeds", [-1]), ("train.seeds", [2**32]),
        ("data.seed", -5), ("model.latent_dim", 10**9), ("train.batch_size", 10**12),
        ("runtime.checkpoint_seconds", float("inf")), ("model.hidden_dims", [600.0]),
        ("eval.ks", [20, 20]), ("baselines.ease_lambdas", [10.0, 10.0]),
    ]:
        refused("params: numbers outside their domain", f"{dotted}: {value!r}", download,
                set_param(dotted, value))
    refused("params: numbers outside their domain", "a key written twice", download,
            write_text_yaml(lambda t: t.replace("  latent_dim: 8\n", "  latent_dim: 8\n  latent_dim: 300\n")))
    refused("params: numbers outside their domain", "a parameter left out", download, drop_param("beta.cap"))

    # The ratings file.
    for name, setup in [
        ("source missing", set_param("data.source", "nope.csv")),
        ("source is a folder", both(make_dir("folder.csv"), set_param("data.source", "folder.csv"))),
        ("source empty", ratings("")),
        ("source binary garbage",
         both(write("bad.csv", bytes(range(256)) * 40), set_param("data.source", "bad.csv"))),
        ("source is /dev/null", set_param("data.source", "/dev/null")),
        ("header only", ratings("userId,movieId,rating,timestamp\n")),
        ("no rating column", ratings("userId,movieId\n1,2\n")),
        ("userId not a number", with_rows(lambda r: ["abc" + r[0][r[0].index(","):], *r[1:]])),
        ("userId above the int64 range",
         with_rows(lambda r: ["99999999999999999991" + r[0][r[0].index(","):], *r[1:]])),
        ("userId fractional", with_rows(lambda r: ["1.5" + r[0][r[0].index(","):], *r[1:]])),
        ("movieId fractional",
         with_rows(lambda r: [r[0].split(",")[0] + ",10.5," + ",".join(r[0].split(",")[2:]), *r[1:]])),
        ("rating missing",
         with_rows(lambda r: [",".join(r[0].split(",")[:2]) + ",," + r[0].split(",")[3], *r[1:]])),
        ("rating 7.5",
         with_rows(lambda r: [",".join(r[0].split(",")[:2]) + ",7.5," + r[0].split(",")[3], *r[1:]])),
        ("rating negative",
         with_rows(lambda r: [",".join(r[0].split(",")[:2]) + ",-1," + r[0].split(",")[3], *r[1:]])),
        ("gzip cut in half", gz_truncated),
        ("zip without a ratings file", zip_without_ratings),
        (".dat file with commas", ratings("1,10,4,978300760\n", "bad.dat")),
        ("user-item file: a count of 0", ratings("user,item,plays\na,x,3\nb,y,0\n")),
        ("user-item file: two user columns", ratings("user,customer_id,item\na,b,x\n")),
        ("user-item file: no item column", ratings("user,thing\na,x\n")),
        ("user-item file: a date that is not one", ratings("user,item,timestamp\na,x,yesterday\n")),
        ("user-item file: a date past 2262", ratings("user,item,time\na,x,2000-01-01\nb,y,2999-01-01\n")),
        ("timestamps in milliseconds among seconds",
         with_rows(lambda r: [r[0].rsplit(",", 1)[0] + ",978300760000", *r[1:]])),
        ("a timestamp in the future", with_rows(lambda r: [r[0].rsplit(",", 1)[0] + ",4102444800", *r[1:]])),
        ("a negative timestamp", with_rows(lambda r: [r[0].rsplit(",", 1)[0] + ",-60", *r[1:]])),
    ]:
        refused("ratings file", name, download, setup)
    refused("ratings file", "three users only (refused when split)", ["prepare"], both(
        ratings(csv_source([f"{u},{m},5,1" for u in (1, 2, 3) for m in range(10)])), downloaded))
    out.append(Case("ratings file", "a pair rated twice (kept once, counted)", download, "accepted",
                    with_rows(lambda r: [*r, r[0]]), duplicates_counted))
    out.append(Case("ratings file", "MovieLens's header in lower case", download, "accepted",
                    rewritten("userid,movieid,rating,timestamp", ","), same_ratings_as_base))
    out.append(Case("ratings file", "MovieLens's columns tab-separated in a .csv", download, "accepted",
                    rewritten("userId\tmovieId\trating\ttimestamp", "\t"), same_ratings_as_base))

    # prepare
    for name, setup in [
        ("more held-out users than users", set_param("data.heldout_users", 100_000)),
        ("no user left after min_user_positives", set_param("data.min_user_positives", 100_000)),
        ("more folds than users allow", both(set_param("data.kfold", 1000), set_param("data.folds", [0]))),
        ("raw ratings overwritten with garbage", write("data/raw/ratings.parquet", b"garbage" * 100)),
        ("raw folder missing", remove("data/raw")),
    ]:
        refused("prepare", name, ["prepare"], setup)

    # train
    train = ["train", "original", "--seed", "1", "--fold", "0"]
    for name, command, setup in [
        ("unknown variant", ["train", "nope", "--seed", "1", "--fold", "0"], nothing),
        ("a fold not in data.folds", ["train", "original", "--seed", "1", "--fold", "3"], nothing),
        ("a seed not in train.seeds", ["train", "original", "--seed", "9", "--fold", "0"], nothing),
        ("prepared training matrix garbage", train,
         write("data/prepared/fold-0/train.parquet", b"PAR1garbage")),
        ("prepared split missing", train, remove("data/prepared")),
        ("disk full when the model is written", train, failing_writes(errno.ENOSPC)),
        ("model folder without write permission", train, failing_writes(errno.EACCES)),
        ("model path is a folder", train, make_dir(str(MODEL))),
    ]:
        out.append(Case("train", name, command, "refused", setup, own=("dvclive/original/fold-0/seed-1/",)))
    out.append(Case("train", "a damaged resume checkpoint (set aside, trained afresh)", train, "accepted",
                    write(".checkpoints/original/fold-0/seed-1.pt", b"not a checkpoint"),
                    checkpoint_set_aside))

    # evaluate
    evaluate = ["evaluate", "original"]
    for name, setup in [
        ("16 bytes of the weights flipped", overwrite_bytes(str(MODEL), 0.6)),
        ("model file cut in half", truncate(str(MODEL))),
        ("model file empty", write(str(MODEL), b"")),
        ("model missing", remove(str(MODEL))),
        ("model of relu filed as original", copy_file("models/relu/fold-0/seed-1.pt", str(MODEL))),
        ("model of another split", other_split),
        ("model path is a folder", make_dir(str(MODEL))),
        ("metrics folder without write permission", failing_writes(errno.EACCES)),
        ("disk full when the results are written", failing_writes(errno.ENOSPC)),
    ]:
        refused("evaluate", name, evaluate, setup)

    # baselines
    for command in (["popularity"], ["ease"], ["rp3beta"]):
        refused("baselines", f"{command[0]}: prepared test matrix garbage", command,
                write("data/prepared/fold-0/test_foldin.parquet", b"garbage"))
    refused("baselines", "ease: cut-off larger than the item count", ["ease"],
            set_param("eval.ks", [20, 50, 100000]))

    # aggregate
    aggregate = ["aggregate"]
    for name, setup in [
        ("a summary file not JSON", write("metrics/variants/relu.json", "{not json")),
        ("a summary with a non-numeric metric", summary_json_gone_wrong),
        ("a per-user file garbage", write("metrics/per_user/relu.parquet", b"garbage")),
        ("a per-user file missing a run of one user", per_user_missing_a_user),
        ("a per-user file with other users", per_user_other_users),
        ("metrics folder missing", remove("metrics/variants")),
        ("training logs missing", remove("dvclive")),
        ("a training log garbage", write("dvclive/relu/fold-0/seed-1/plots/metrics/val_ndcg@100.tsv",
                                          b"\x00\x01garbage")),
        ("results folder without write permission", failing_writes(errno.EACCES)),
        ("table path is a folder", make_dir("metrics/table.md")),
        ("disk full when the table is written", failing_writes(errno.ENOSPC)),
        ("disk full after 3 of its outputs are in place", failing_after(3)),
        ("disk full after all but its last output are in place", failing_after(9)),
    ]:
        refused("aggregate", name, aggregate, setup)
    # Files one stage hands another: each says what wrote it, and the reader checks.
    for name, command, setup in [
        ("two rows' metrics files swapped", aggregate,
         swap("metrics/variants/original.json", "metrics/variants/relu.json")),
        ("two rows' per-user files swapped", aggregate,
         swap("metrics/per_user/original.parquet", "metrics/per_user/relu.parquet")),
        ("a row's metrics file from another split", aggregate,
         edit_json("metrics/variants/relu.json", "split", {"0": "0000000000000000"})),
        ("a row's metrics file from other seeds", aggregate, seed_renamed),
        ("a row's metrics file from other folds", aggregate,
         edit_json("metrics/variants/relu.json", "folds", [1])),
        ("the split rebuilt under the rows' results", aggregate, other_split),
        ("a prepared table changed behind its manifest", ["evaluate", "original"], shuffled_items),
        ("a prepared table with rows removed", ["train", "original", "--seed", "1", "--fold", "0"],
         train_rows_removed),
        ("EASE's λ from another split", ["blend", "original"],
         edit_json("models/ease/lambda.json", "split", {"0": "0000000000000000"})),
        ("EASE's λ infinite", ["blend", "original"],
         edit_json("models/ease/lambda.json", "lambdas", {"0": 1e999})),
        ("EASE's λ missing", ["blend", "original"], remove("models/ease/lambda.json")),
        ("RP3β's α and β from another split", ["control-blend"],
         edit_json("models/rp3beta/choice.json", "split", {"0": "0000000000000000"})),
        ("RP3β's β above 1", ["control-blend"], edit_json("models/rp3beta/choice.json", "betas", {"0": 1.5})),
        ("EASE's λ where RP3β's choice belongs", ["control-blend", "--rp3beta", "models/ease/lambda.json"],
         lambda root: None),
        ("a run locked by another process", ["train", "original", "--seed", "1", "--fold", "0"], _locked),
        ("two rows' training logs swapped", aggregate, swap_folders("dvclive/original", "dvclive/relu")),
        ("one validation log swapped between rows", aggregate,
         swap("dvclive/original/fold-0/seed-1/plots/metrics/val_ndcg@100.tsv",
              "dvclive/relu/fold-0/seed-1/plots/metrics/val_ndcg@100.tsv")),
        ("a row's validation score edited by hand", aggregate,
         edit_json("metrics/variants/relu.json", "validation_by_fold", {"0": 0.99}, by_hand=True)),
        ("a row's metric edited by hand", aggregate, edit_json("metrics/variants/relu.json", "ndcg@100", 0.5,
                                                               by_hand=True)),
        ("the split's statistics edited by hand (data set's name)", aggregate,
         edit_json("data/stats.json", "dataset", "ml-20m", by_hand=True)),
        ("EASE's λ edited and the blend rerun on it", aggregate, both(
            edit_json("models/ease/lambda.json", "lambdas", {"0": 7.5}), _run_blend)),
        ("RP3β's α edited and the control blend rerun on it", aggregate, both(
            edit_json("models/rp3beta/choice.json", "alphas", {"0": 0.3}), _rerun("control-blend"))),
    ]:
        refused("provenance of what a stage reads", name, command, setup)
    # Options that point one command's output at what it reads, or at another stage's folder.
    for name, command in [
        ("prepare --stats on its own input", ["prepare", "--stats", "data/raw/ratings.parquet"]),
        ("prepare --out on the download stage's folder", ["prepare", "--out", "data/raw"]),
        ("download --out on the prepared split", ["download", "--no-progress", "--out", "data/prepared"]),
        ("aggregate --table on a row's metrics file",
         ["aggregate", "--table", "metrics/variants/original.json"]),
        ("aggregate --csv on the same path as --table", ["aggregate", "--csv", "metrics/table.md"]),
        ("train --models on the prepared split", ["train", "original", "--seed", "1", "--fold", "0",
                                                  "--models", "data/prepared"]),
        ("evaluate --per-user inside its models", ["evaluate", "original", "--per-user", "models/original"]),
        ("aggregate --plots-dir on a file", ["aggregate", "--plots-dir", "params.yaml"]),
        ("prepare --stats below a file", ["prepare", "--stats", "ratings.csv/stats.json"]),
    ]:
        refused("options: an output on what a command reads", name, command, nothing)
    out.append(Case("params: names the study does not compute", "a label of no row (named)",
                    aggregate, "accepted", set_param("report.labels.orignal", "Original"),
                    table_names("report.labels name nothing in the catalogue: orignal")))
    out.append(Case("provenance of what a stage reads", "a claim on a row the study does not run (named)",
                    aggregate, "accepted", set_param("claims.relu_worse.row", "small_latent"),
                    claims_page_names("relu_worse: small_latent not run in this study")))

    # recommend (not a stage: a look at a trained model)
    for name, command in [
        ("unknown user", ["recommend", "original", "--user", "987654321"]),
        ("unknown movie", ["recommend", "original", "--movie", "no such film at all"]),
        ("neither user nor movies", ["recommend", "original"]),
        ("unknown variant", ["recommend", "nope", "--user", "1"]),
    ]:
        refused("recommend", name, command, nothing)
    refused("recommend", "damaged model", ["recommend", "original", "--movie", "1"],
            overwrite_bytes(str(MODEL), 0.6))
    return out


def classify(case: Case, root: Path, code: int, stderr: str, exc: BaseException | None,
             before: dict[str, str]) -> str:
    if exc is not None:
        return "traceback"
    if case.expect == "accepted":
        if code != 0:
            return "false alarm"
        return "accepted" if case.check is None or case.check(root) else "silent"
    if code == 0:
        return "silent"
    lines = stderr.strip().splitlines()
    if code != 1 or len(lines) != 1 or not lines[0].startswith("error: "):
        return "unclear"
    after = snapshot(root)
    if any(after.get(path) != digest
           for path, digest in before.items() if not path.startswith(case.own or "\0")):
        return "damaged"
    return "clear"


def run_case(case: Case, base: Path, scratch: Path) -> tuple[str, str]:
    root = scratch / "case"
    if root.exists():
        for path in [root, *root.rglob("*")]:  # read-only cases leave folders without write permission
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(root)
    shutil.copytree(base, root, symlinks=True)
    real_replace = os.replace
    try:
        case.setup(root)
        before = snapshot(root)
        with inside(root):
            code, stderr, exc = run(case.command)
    finally:
        os.replace = real_replace
        while HELD:
            os.close(HELD.pop())
    outcome = classify(case, root, code, stderr, exc, before)
    message = stderr.strip().splitlines()[-1] if stderr.strip() else (repr(exc) if exc else "")
    return outcome, re.sub(r"\d+\.\d MB free", "… MB free", message.replace(str(root), "<workspace>"))


def matrix(keep: Path | None = None) -> list[tuple[Case, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(keep or tmp)
        base = scratch / "base"
        base.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build_base(base)
        print(f"workspace built in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        results = []
        for i, case in enumerate(cases(), 1):
            outcome, message = run_case(case, base, scratch)
            results.append((case, outcome, message))
            print(f"[{i}] {case.group} / {case.name}: {outcome}", file=sys.stderr)
        return results


def markdown(results: list[tuple[Case, str, str]]) -> str:
    counts = Counter(outcome for _, outcome, _ in results)
    lines = [f"{len(results)} cases: " + ", ".join(f"{counts[k]} {k}" for k in sorted(counts)) + ".", "",
             "| group | case | command | outcome | what the user reads |", "|---|---|---|---|---|"]
    for case, outcome, message in results:
        shown = message.replace("|", "\\|")
        shown = shown if len(shown) <= 160 else shown[:157] + "…"
        lines.append(f"| {case.group} | {case.name.replace('|', '/')} | `multvae {' '.join(case.command)}` | "
                     f"{outcome} | {shown} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="a page with a <!-- fault-matrix --> block to refresh")
    args = parser.parse_args()
    results = matrix()
    table = markdown(results)
    print(table)
    if args.markdown:
        page = args.markdown.read_text()
        if not BLOCK.search(page):
            raise SystemExit(f"{args.markdown}: no <!-- fault-matrix --> … <!-- end fault-matrix --> block")
        args.markdown.write_text(BLOCK.sub(lambda m: m.group(1) + table + m.group(2), page))
    bad = [r for r in results if r[1] not in GOOD]
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
