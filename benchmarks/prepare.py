"""Benchmark of the prepare stage at ML-20M scale: wall time and peak memory of `multvae prepare`.

Generates synthetic ratings of the requested size (`multvae.config.SYNTHETIC_PRESETS`) as the download
stage would leave them (data/raw/ratings.parquet, movies.parquet) in a temporary folder, then runs
`multvae prepare` on them in a child process, so that its wall time and peak resident memory are
those of the stage alone. Prints one table with PASS/FAIL per target and exits 1 if one fails.

    .venv/bin/python benchmarks/prepare.py                  # ML-20M size, about 20M ratings
    .venv/bin/python benchmarks/prepare.py --size tiny      # a few seconds, to check the script
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from multvae.config import SYNTHETIC_PRESETS
from multvae.synthetic import generate

TARGET_SECONDS = 90.0
TARGET_RSS_GB = 4.0
PAPER_HELDOUT_USERS = 10000  # Liang et al.'s ML-20M protocol

# The stage's own entry point, so that the measurement includes reading, splitting and writing.
CHILD = "from stages.cli import app; app()"
# Runs the command as its own child and reports that child's wall time and peak RSS (KiB on Linux).
# A child forked straight from this process would report this process's peak (it holds the
# generated data) as its own, since Linux carries the high-water mark across fork and exec; the
# launcher is small, so the peak it reports is the stage's.
LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[2:], capture_output=True, text=True)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as fh:
    json.dump({"rc": done.returncode, "wall": wall, "peak_kib": peak,
               "output": done.stdout + done.stderr}, fh)
"""


def write_raw(size: str, seed: int, raw: Path) -> tuple[int, int, int, float]:
    """The download stage's output for the preset; returns ratings, users, items, seconds taken."""
    start = time.perf_counter()
    ratings, movies = generate(dataclasses.replace(SYNTHETIC_PRESETS[size], seed=seed))
    raw.mkdir(parents=True)
    ratings.to_parquet(raw / "ratings.parquet", index=False)
    movies.to_parquet(raw / "movies.parquet", index=False)
    counts = len(ratings), int(ratings["userId"].nunique()), int(ratings["movieId"].nunique())
    return (*counts, time.perf_counter() - start)


def run_prepare(work: Path, split: str, heldout_users: float) -> tuple[float, float, dict]:
    """Run `multvae prepare` in a child process: its wall seconds, peak RSS in GB, and stats."""
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"dataset": "synthetic", "split": split,
                                               "heldout_users": heldout_users}}))
    command = [sys.executable, "-c", CHILD, "prepare", "--params", str(params), "--raw", str(work / "raw"),
               "--out", str(work / "prepared"), "--stats", str(work / "stats.json")]
    report = work / "measure.json"
    subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *command], cwd=work, check=True)
    measured = json.loads(report.read_text())
    if measured["rc"] != 0:
        sys.exit(f"multvae prepare failed (exit {measured['rc']}):\n{measured['output']}")
    stats = json.loads((work / "stats.json").read_text())
    return measured["wall"], measured["peak_kib"] / 2**20, {**stats, **stats["folds"]["0"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SYNTHETIC_PRESETS), default="ml-20m", help="synthetic preset")
    parser.add_argument("--split", choices=["heldout_users", "temporal"], default="heldout_users")
    parser.add_argument("--heldout-users", type=float, default=None,
                        help=f"data.heldout_users (default {PAPER_HELDOUT_USERS} at ml-20m, else 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="parent of the temporary folder (default: the system's temp folder)")
    args = parser.parse_args(argv)
    heldout = args.heldout_users or (PAPER_HELDOUT_USERS if args.size == "ml-20m" else 0.1)

    with tempfile.TemporaryDirectory(prefix="multvae-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        print(f"generating synthetic ratings ({args.size}) ...", flush=True)
        n_ratings, n_users, n_items, gen_s = write_raw(args.size, args.seed, work / "raw")
        print(f"  {n_ratings:,} ratings in {gen_s:.1f} s; running `multvae prepare` "
              f"(data.split={args.split}, data.heldout_users={heldout:g}) ...", flush=True)
        wall, rss_gb, stats = run_prepare(work, args.split, heldout)

    wall_ok, rss_ok = wall < TARGET_SECONDS, rss_gb < TARGET_RSS_GB
    rows = [
        ("ratings", f"{n_ratings:,}", "", ""),
        ("users", f"{n_users:,}", "", ""),
        ("items", f"{n_items:,}", "", ""),
        ("positives kept", f"{stats['positives']:,}", "", ""),
        ("items after split", f"{stats['items']:,}", "", ""),
        ("train users", f"{stats['train_users']:,}", "", ""),
        ("wall seconds", f"{wall:.1f}", f"< {TARGET_SECONDS:g}", "PASS" if wall_ok else "FAIL"),
        ("peak RSS GB", f"{rss_gb:.2f}", f"< {TARGET_RSS_GB:g}", "PASS" if rss_ok else "FAIL"),
    ]
    print(f"\nmultvae prepare, synthetic {args.size}, data.split={args.split}")
    print(f"{'':<18} {'value':>12} {'target':>8}  result")
    for name, value, target, result in rows:
        print(f"{name:<18} {value:>12} {target:>8}  {result}")
    return 0 if wall_ok and rss_ok else 1


if __name__ == "__main__":
    sys.exit(main())
