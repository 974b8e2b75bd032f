"""EASE's λ search: one eigendecomposition for every λ (what the ease stage does) against a dense
Cholesky inversion per λ (`baselines.ease_weights`, what the blend stage does for its one λ), on
synthetic data of a given shape.

    python benchmarks/ease.py                                  # ML-1M's shape and ml-latest-small's
    python benchmarks/ease.py --items 20108 --users 116677 --validation 10000   # ML-20M's (minutes, 10 GB)

Prints, per shape, the time of the eigendecomposition, of scoring the validation users at one λ
from it, and of one Cholesky inversion plus the same scoring, then both searches' totals for the
pipeline's 13 λ (7 on the grid, 6 from 3 rounds of refinement) and their ratio. One run; run it
alone on the machine (other jobs change every figure, not the ratio much).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multvae.baselines import EaseSpectrum, ease_dtype, ease_weights, linear_scorer  # noqa: E402

SEARCHED = 13  # 7 grid values + 3 refinement rounds of 2 midpoints


def random_matrix(users: int, items: int, per_user: int, seed: int) -> sp.csr_matrix:
    """Users × items with about `per_user` positives a user, items drawn with a long tail."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.choice(items, size=rows.size, p=popularity)
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(users, items))
    matrix.data[:] = 1.0
    return matrix


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(users: int, items: int, validation: int, per_user: int) -> None:
    train = random_matrix(users, items, per_user, seed=0)
    foldin = random_matrix(validation, items, per_user // 2, seed=1)
    dtype = ease_dtype(items)
    spectrum_holder: list[EaseSpectrum] = []
    eig = seconds(lambda: spectrum_holder.append(EaseSpectrum(train)))
    spectrum = spectrum_holder[0]
    score = seconds(lambda: spectrum.scorer(300.0)(foldin))
    inverse = seconds(lambda: linear_scorer(ease_weights(train, 300.0))(foldin))
    eigen_total = eig + SEARCHED * score + seconds(lambda: spectrum.weights(300.0))
    cholesky_total = SEARCHED * inverse
    print(f"{users:,} users x {items:,} items ({np.dtype(dtype).name}), {validation:,} validation users: "
          f"eigendecomposition {eig:.1f} s, scoring one λ from it {score:.2f} s; one Cholesky inversion "
          f"and scoring {inverse:.2f} s. {SEARCHED} λ: eigen {eigen_total:.1f} s, Cholesky "
          f"{cholesky_total:.1f} s (ratio {cholesky_total / eigen_total:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int)
    parser.add_argument("--items", type=int)
    parser.add_argument("--validation", type=int)
    parser.add_argument("--per-user", type=int, default=90)
    args = parser.parse_args()
    if args.items:
        measure(args.users or 5 * args.items, args.items, args.validation or 1000, args.per_user)
        return
    measure(4_834, 3_480, 600, 90)  # ML-1M's shape with 600 + 600 held-out users
    measure(483, 5_584, 60, 75)  # ml-latest-small's, as the default study splits it


if __name__ == "__main__":
    main()
