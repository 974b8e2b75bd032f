"""The size of the one-split 5% test (multvae.stats.paired_difference) where training runs matter:
rejection rates under the null over run share × test users × seeds, for a Mult-VAE row against a
deterministic baseline and for two Mult-VAE rows, with their Monte-Carlo errors.

Run share: the training runs' part of the true variance of the estimated difference (the rest is
the users'). Writes a Markdown table that docs/statistics.md shows:

    .venv/bin/python benchmarks/size_grid.py --reps 4000 --out benchmarks/size_grid.md
    .venv/bin/python benchmarks/size_grid.py --reps 4000 --plain --out benchmarks/size_grid_plain.md

`--plain` measures the former rule (Welch–Satterthwaite degrees of freedom from the estimates).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from multvae import stats
from multvae.stats import paired_difference

USER_SD, NOISE_SD = 0.1, 0.03  # per-user spread of a difference; user × run noise (NDCG@100-like)
SHARES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95)
USERS = (60, 600, 10_000)
SEEDS = (3, 5, 10)


def run_sd(share: float, users: int, seeds: int, systems: int) -> float:
    """The SD of a run's shift that gives the run term `share` of the difference's variance."""
    user_part = (USER_SD**2 + systems * NOISE_SD**2 / seeds) / users
    return float(np.sqrt(share / (1 - share) * user_part * seeds / systems))


def draw(rng: np.random.Generator, share: float, users: int, seeds: int, vs_vae: bool) -> tuple[dict, dict]:
    """Two systems under the null on one split: a, a Mult-VAE row (users × seeds); b, a second row
    or a deterministic baseline (users × 1)."""
    systems = 2 if vs_vae else 1
    sd = run_sd(share, users, seeds, systems)
    user = rng.normal(0.4, 0.2, (users, 1))
    a = user + rng.normal(0, USER_SD, (users, 1)) + rng.normal(0, sd, (1, seeds)) \
        + rng.normal(0, NOISE_SD, (users, seeds))
    if vs_vae:
        b = user + rng.normal(0, sd, (1, seeds)) + rng.normal(0, NOISE_SD, (users, seeds))
    else:
        b = user
    return {0: a}, {0: b}


def size(rng: np.random.Generator, reps: int, share: float, users: int, seeds: int, vs_vae: bool) -> float:
    rejected = 0
    for _ in range(reps):
        a, b = draw(rng, share, users, seeds, vs_vae)
        rejected += paired_difference(a, b, 0.95, b_stochastic=vs_vae).p_value < 0.05
    return rejected / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4000)
    parser.add_argument("--plain", action="store_true",
                        help="the former rule: no bound on the runs' variance")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.plain:
        stats.DOF_BOUND = None
    rng = np.random.default_rng(2030)
    mc = float(np.sqrt(0.05 * 0.95 / args.reps))
    started = time.monotonic()
    rule = ("plain Welch–Satterthwaite" if args.plain
            else f"runs' variance at its {stats.DOF_BOUND:.0%} upper bound")
    lines = [f"Rejection rate (%) of the nominal 5% test under the null, degrees of freedom: {rule}; "
             f"{args.reps:,} replications a cell, Monte-Carlo SE {100 * mc:.2f} points; above 6% in bold.",
             "",
             "| design | test users | seeds | " + " | ".join(f"run share {s:g}" for s in SHARES) + " |",
             "|" + "---|" * (3 + len(SHARES))]
    for vs_vae in (False, True):
        for users in USERS:
            for seeds in SEEDS:
                rates = [size(rng, args.reps, s, users, seeds, vs_vae) for s in SHARES]
                cells = " | ".join(f"**{100 * r:.1f}**" if r > 0.06 else f"{100 * r:.1f}" for r in rates)
                design = "VAE vs VAE" if vs_vae else "VAE vs baseline"
                lines.append(f"| {design} | {users:,} | {seeds} | {cells} |")
                print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"{args.out} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
