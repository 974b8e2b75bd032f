"""Whole-process time of training `original` on ML-1M: `multvae train` against a plain dense
PyTorch implementation of the same recipe, each as the process a user would run.

    .venv/bin/python benchmarks/whole_run.py              # 30 epochs, 2 runs of each, about 3 min
    .venv/bin/python benchmarks/whole_run.py --epochs 5 --repeats 1   # a smoke check

Both processes start from the same prepared split (ML-1M from ../shared/datasets, 600 validation
and 600 test users, prepared once by `multvae download` and `multvae prepare`, not timed) and do
the same work: start Python and import torch, read the split, build the model ([I, 600, 200],
tanh, dropout 0.5, Xavier-uniform weights and N(0, 0.001²) biases as in the paper), train with
Adam (lr 1e-3, batch 500, β annealed to 0.2 at 85.5% of the updates), score the validation
users after every epoch (NDCG@100, Recall@20, Recall@50, fold-in items excluded), keep the best
epoch's weights and write them to disk. The dense one is what most public implementations do:
each batch densified, F.normalize, F.dropout, nn.Linear layers, log_softmax * x, the default
torch.optim.Adam, dense fold-in scores for validation. It runs as
`python benchmarks/whole_run.py dense --data <fold dir>`, so it stays runnable on its own.

The runs alternate (multvae, dense, multvae, dense, ...) so that a change in the machine's load
weighs on both; the ratio is of the medians. Prints both best validation NDCG@100 values too: the
same recipe should land near the same number.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ML1M = (REPO / "../shared/datasets/ml-1m/ratings.csv.gz").resolve()
TARGET_RATIO = 0.6  # multvae's wall time over the dense implementation's


def dense_main(data: Path, epochs: int, seed: int, out: Path) -> None:
    """The plain dense implementation, whole: read, train, validate each epoch, save the best."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    import torch
    import torch.nn.functional as F
    from torch import nn

    def csr(name: str, users: np.ndarray, n_items: int) -> sp.csr_matrix:
        frame = pd.read_parquet(data / f"{name}.parquet")
        rows = np.searchsorted(users, frame["user"].to_numpy())
        return sp.csr_matrix((np.ones(len(frame), np.float32), (rows, frame["item"].to_numpy())),
                             shape=(users.size, n_items))

    n_items = len(pd.read_parquet(data / "items.parquet"))
    train_users = np.unique(pd.read_parquet(data / "train.parquet")["user"].to_numpy())
    train = csr("train", train_users, n_items)
    val_users = np.unique(pd.read_parquet(data / "validation_target.parquet")["user"].to_numpy())
    val_in = csr("validation_foldin", val_users, n_items)
    val_out = csr("validation_target", val_users, n_items)

    torch.manual_seed(seed)
    latent, batch_size, cap = 200, 500, 0.2

    def mlp(dims: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(dims) - 2 else [])
        return nn.Sequential(*layers)

    encoder, decoder = mlp([n_items, 600, 2 * latent]), mlp([latent, 600, n_items])
    for layer in [*encoder, *decoder]:
        if isinstance(layer, nn.Linear):  # the paper's initialisation
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    per_epoch = math.ceil(train.shape[0] / batch_size)
    anneal_steps = 0.855 * per_epoch * epochs / cap
    discounts = 1.0 / np.log2(np.arange(2, 102))

    def validate() -> dict[str, float]:
        encoder.eval()
        decoder.eval()
        with torch.no_grad():
            x = torch.from_numpy(val_in.toarray())
            logits = decoder(encoder(F.normalize(x, dim=1))[:, :latent])
            logits[x > 0] = -torch.inf
            top = torch.topk(logits, 100, dim=1).indices.numpy()
        dense_out = val_out.toarray()
        hit = np.take_along_axis(dense_out, top, axis=1) > 0
        n_rel = np.asarray(val_out.sum(axis=1)).ravel().astype(int)
        ideal = np.array([discounts[:min(n, 100)].sum() for n in n_rel])
        encoder.train()
        decoder.train()
        return {"ndcg@100": float(((hit * discounts).sum(1) / ideal).mean()),
                "recall@20": float((hit[:, :20].sum(1) / np.minimum(n_rel, 20)).mean()),
                "recall@50": float((hit[:, :50].sum(1) / np.minimum(n_rel, 50)).mean())}

    rng = np.random.default_rng(seed)
    step, best, best_state = 0, -1.0, None
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(train.shape[0])
        for start in range(0, train.shape[0], batch_size):
            x = torch.from_numpy(train[order[start:start + batch_size]].toarray())
            out_ = encoder(F.dropout(F.normalize(x, dim=1), 0.5, training=True))
            mu, logvar = out_[:, :latent], out_[:, latent:]
            logits = decoder(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar))
            nll = -(F.log_softmax(logits, dim=1) * x).sum(dim=1).mean()
            kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0).sum(dim=1).mean()
            loss = nll + min(cap, step / anneal_steps) * kl
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        scores = validate()
        if scores["ndcg@100"] > best:
            best = scores["ndcg@100"]
            best_state = {k: v.clone() for k, v in {**encoder.state_dict(), **decoder.state_dict()}.items()}
        print(f"dense epoch {epoch}/{epochs}  val_ndcg@100 {scores['ndcg@100']:.4f}  best {best:.4f}  "
              f"{time.perf_counter() - t0:.2f}s", flush=True)
    torch.save(best_state, out)
    print(f"best val_ndcg@100 {best:.4f}")


def _run(command: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of a whole process, and its output; a failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def _best(output: str, marker: str) -> float:
    lines = [line for line in output.splitlines() if marker in line]
    return float(lines[-1].split(marker)[1].split()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    dense = sub.add_parser("dense", help="run the dense implementation alone")
    dense.add_argument("--data", type=Path, required=True, help="a prepared fold (data/prepared/fold-0)")
    dense.add_argument("--epochs", type=int, default=30)
    dense.add_argument("--seed", type=int, default=1)
    dense.add_argument("--out", type=Path, default=Path("dense-best.pt"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "dense":
        dense_main(args.data, args.epochs, args.seed, args.out)
        return 0
    if not ML1M.is_file():
        sys.exit(f"{ML1M} not found: this benchmark needs the ML-1M ratings (../shared/datasets)")

    exe = Path(sys.executable).with_name("multvae")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "params.yaml").write_text(
            f"data: {{dataset: ml-1m, source: '{ML1M}', heldout_users: 600}}\n"
            f"train: {{epochs: {args.epochs}, seeds: [1]}}\n"
            "runtime: {device: cpu}\nvariants: {original: {}}\n")
        for stage in ("download", "prepare"):
            _run([str(exe), stage], work)
        print(f"ML-1M prepared in {work}; load average {os.getloadavg()[0]:.2f}", flush=True)
        ours = [str(exe), "train", "original", "--seed", "1", "--fold", "0"]
        theirs = [sys.executable, str(Path(__file__).resolve()), "dense", "--data", "data/prepared/fold-0",
                  "--epochs", str(args.epochs)]
        times: dict[str, list[float]] = {"multvae": [], "dense": []}
        best: dict[str, float] = {}
        for repeat in range(args.repeats):
            for name, command, marker in (("multvae", ours, "best "),
                                          ("dense", theirs, "best val_ndcg@100 ")):
                seconds, output = _run(command, work)
                times[name].append(seconds)
                best[name] = _best(output, marker)
                print(f"  run {repeat + 1}: {name:<8} {seconds:6.1f} s  "
                      f"best validation NDCG@100 {best[name]:.4f}", flush=True)
        load_end = os.getloadavg()[0]
    ours_s, dense_s = statistics.median(times["multvae"]), statistics.median(times["dense"])
    ratio = ours_s / dense_s
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"\nwhole process, `original` on ML-1M, {args.epochs} epochs, median of {args.repeats}:")
    print(f"  multvae train   {ours_s:6.1f} s")
    print(f"  dense           {dense_s:6.1f} s")
    print(f"  ratio           {ratio:6.2f}   target <= {TARGET_RATIO}  {verdict}")
    print(f"  load average at the end {load_end:.2f} (over 2 on this 2-core machine: rerun)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
