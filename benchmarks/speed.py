"""Speed and memory of Mult-VAE training and evaluation at ML-20M shape, in one command.

    .venv/bin/python benchmarks/speed.py            # ML-20M shape and ml-latest-small: several minutes
    .venv/bin/python benchmarks/speed.py --quick    # a small shape, under a minute: a smoke check

Prints one table of figures and of ratios between figures measured in this run, with PASS/FAIL
against the targets, and exits 1 if one fails:

1. the project's trainer (`multvae.training.train_model`, the paper's [I, 600, 200], batch 500,
   Adam): `--batches` updates are timed after `--warmup` and the epoch is extrapolated from their
   median (a full ML-20M-shaped epoch takes minutes);
2. the machine's limit: the architecture's matrix products alone (forward and both backward
   products of every layer at the same shapes and threads, the first layer as a sparse product;
   see GemmPass). One pass of them follows each timed update in the same process, and the epoch
   over GEMM-only ratio is the median of the update/pass pairs, so that another process's load
   weighs on both sides alike;
3. a dense-batch PyTorch reference, as most public implementations do it (each batch densified,
   F.normalize, F.dropout, nn.Linear first layer, log_softmax * x loss, default torch.optim.Adam),
   in a process of its own, timed the same way with its own GEMM passes. The speed-up is the
   lower of the raw ratio of update times and the ratio of each side over its GEMM passes;
4. evaluation of the validation users (scores, fold-in excluded, top-100, NDCG@100,
   Recall@20/50) through `multvae.metrics.score_heldout` and the model's scorer;
5. peak resident memory of training (a second trainer process, without GEMM passes: reading the
   split with `load_dataset`, model, Adam, the updates and the evaluation; it stops before the
   end-of-epoch copy of the best weights, about 0.1 GB more), from wait4's rusage of the child,
   and of the prepare stage (by running benchmarks/prepare.py, when present).

The ML-20M-shaped data is a random CSR matrix, not MovieLens: 116,677 training users and 10,000
validation and 10,000 test users over 20,108 items, 0.5% dense, with a power-law item popularity
(rank^-0.9) and geometric user sizes (at least 5 items); a held-out user's items are split 80/20
into fold-in and target at random. It is written with `multvae.data.write_split` and read with
`load_dataset`, as the stages do. The real ml-latest-small ratings (read in place from
../shared/datasets) are prepared with `multvae.split.split` and timed the same way; the targets
apply to the ML-20M shape only.

Each part runs in its own child process, one after another on the same threads, so that the
peak memory is that part's alone and nothing one part does to the process (the trainer tunes
the allocator) changes another. Other processes on the machine change timings several-fold:
the load average is printed at the start and end; compare ratios, and re-run when it is high.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from multvae.params import defaults

BASE, RUNTIME = defaults()

REPO = Path(__file__).resolve().parents[1]
ML_LATEST_SMALL = (REPO / "../shared/datasets/ml-latest-small").resolve()

# Targets of the speed issues (#4, raised by #12: at least 2.5x the dense reference on this CPU).
MAX_EPOCH_OVER_GEMM = 1.3
MIN_SPEEDUP_OVER_DENSE = 2.5
MAX_EVAL_SECONDS = 10.0
MAX_TRAIN_RSS_GB = 4.0

# name: (training users, held-out users, items, density)
SHAPES = {"ml-20m": (116_677, 10_000, 20_108, 0.005), "quick": (6_000, 1_000, 3_000, 0.005)}
POPULARITY_EXPONENT = 0.9  # as multvae.synthetic
BATCH_SIZE = 500
KS = (20, 50, 100)


# --------------------------------------------------------------------------------------------
# Children: each measures one thing and writes <work>/<name>.json.
# --------------------------------------------------------------------------------------------

def _random_rows(rng, n_users: int, n_items: int, density: float):
    """Binary CSR rows: item popularity ∝ rank^-0.9, user sizes 5 + geometric, mean ≈ density·items."""
    import numpy as np
    import scipy.sparse as sp

    popularity = 1.0 / np.arange(1, n_items + 1) ** POPULARITY_EXPONENT
    cdf = np.cumsum(popularity[rng.permutation(n_items)])
    cdf /= cdf[-1]
    mean = density * n_items
    counts = np.minimum(5 + rng.geometric(1.0 / (mean - 4), n_users) - 1, n_items // 4)
    # Draw twice each user's size with replacement, keep the first `count` distinct items.
    user = np.repeat(np.arange(n_users, dtype=np.int64), 2 * counts)
    item = np.minimum(np.searchsorted(cdf, rng.random(user.size), side="right"), n_items - 1)
    _, first = np.unique(user * n_items + item, return_index=True)
    first.sort()
    user, item = user[first], item[first]
    starts = np.searchsorted(user, np.arange(n_users))
    keep = np.arange(user.size) - starts[user] < counts[user]
    user, item = user[keep], item[keep]
    matrix = sp.csr_matrix((np.ones(user.size, np.float32), (user, item)), shape=(n_users, n_items))
    matrix.sort_indices()
    return matrix


def child_data(args) -> dict:
    """The ML-20M-shaped (or --quick) random data, written as the prepare stage writes its split
    (`multvae.data.write_split`), so that the other children read it with `load_dataset`."""
    import numpy as np
    import pandas as pd

    from multvae.split import Split, write_split

    n_train, n_heldout, n_items, density = SHAPES[args.shape]
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    train = _random_rows(rng, n_train, n_items, density)

    def pairs(matrix, first_user: int) -> pd.DataFrame:
        user = np.repeat(np.arange(matrix.shape[0], dtype=np.int32) + first_user, np.diff(matrix.indptr))
        return pd.DataFrame({"user": user, "item": matrix.indices.astype(np.int32)})

    tables = {"train": pairs(train, 0)}
    for i, role in enumerate(("validation", "test")):
        heldout = pairs(_random_rows(rng, n_heldout, n_items, density), n_train + i * n_heldout)
        is_target = rng.random(len(heldout)) < 0.2
        tables[f"{role}_foldin"], tables[f"{role}_target"] = heldout[~is_target], heldout[is_target]
    n_users = n_train + 2 * n_heldout
    roles = np.repeat(["train", "validation", "test"], [n_train, n_heldout, n_heldout])
    users = pd.DataFrame({"user": np.arange(n_users, dtype=np.int32), "userId": np.arange(1, n_users + 1),
                          "role": roles})
    items = pd.DataFrame({"item": np.arange(n_items, dtype=np.int32), "movieId": np.arange(1, n_items + 1),
                          "title": ""})
    stats = {"train_users": n_train, "validation_users": n_heldout, "test_users": n_heldout, "items": n_items}
    write_split({0: Split(users=users, items=items, stats=stats, **tables)}, Path(args.work) / "synthetic",
                Path(args.work) / "synthetic-stats.json")
    return {"users": n_train, "heldout": n_heldout, "items": n_items, "nnz": int(train.nnz),
            "density": train.nnz / (n_train * n_items), "seconds": time.perf_counter() - start}


def child_small_data(args) -> dict:
    """ml-latest-small, prepared as the prepare stage does, into <work>/small."""
    from multvae.ratings import read_movies, read_ratings
    from multvae.split import split, write_split

    ratings = read_ratings(ML_LATEST_SMALL / "ratings.csv.gz")
    movies = read_movies(ML_LATEST_SMALL / "movies.csv")
    result = split(ratings, replace(BASE.data, dataset="ml-latest-small", heldout_users=60), movies)
    write_split(result, Path(args.work) / "small", Path(args.work) / "small-stats.json")
    return result[0].stats


def _dataset(args):
    """The Dataset of --data, read as the train stage reads it (`multvae.data.load_dataset`)."""
    from multvae.data import load_dataset
    from multvae.layout import fold_dir

    return load_dataset(fold_dir(Path(args.work) / args.data, 0))


def _config(args, epochs: int = 1):

    return replace(BASE, train=replace(BASE.train, batch_size=BATCH_SIZE, epochs=epochs))


def _runtime(args):

    return replace(RUNTIME, device=args.device, threads=args.threads, compile=args.compile)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


class _Stop(Exception):
    pass


class GemmPass:
    """The architecture's matrix products alone, at the trainer's shapes: one `run()` times each
    once, so that a pass can follow every timed update and both see the same machine load.

    Per dense layer (batch B, d_in -> d_out): forward B×d_in @ d_in×d_out, and backward
    B×d_out @ d_out×d_in (input gradient) and d_out×B @ B×d_in (weight gradient), each into a
    preallocated output. The first layer is the sparse product (CSR batch @ I×600 forward, its
    transpose @ B×600 for the weight gradient; no input gradient), by the faster of
    torch.sparse.mm and embedding_bag; the output layer's forward by the faster of its two
    layouts (h @ Wᵀ or W @ hᵀ). Biases, activations and everything else are left out."""

    def __init__(self, rows, cfg, device: str):
        import numpy as np
        import torch
        import torch.nn.functional as F

        self.device = device
        n, n_items = rows.shape
        hidden, latent = list(cfg.hidden_dims), cfg.latent_dim
        gen = torch.Generator().manual_seed(0)

        def rand(*shape):
            return torch.randn(*shape, generator=gen).to(device)

        self.products: dict[str, object] = {}
        indptr = torch.from_numpy(rows.indptr.astype(np.int64)).to(device)
        indices = torch.from_numpy(rows.indices.astype(np.int64)).to(device)
        values = torch.rand(indices.numel(), generator=gen).to(device)
        w_in, g_in = rand(n_items, hidden[0]), rand(n, hidden[0])
        x = torch.sparse_csr_tensor(indptr, indices, values, (n, n_items))
        by_item = torch.argsort(indices, stable=True)
        row_of = torch.repeat_interleave(torch.arange(n, device=device), indptr[1:] - indptr[:-1])
        offsets = torch.zeros(n_items + 1, dtype=torch.int64, device=device)
        torch.cumsum(torch.bincount(indices, minlength=n_items), 0, out=offsets[1:])
        xt = torch.sparse_csr_tensor(offsets, row_of[by_item], values[by_item], (n_items, n))
        self._faster("first layer forward (sparse)",
                     lambda: torch.sparse.mm(x, w_in),
                     lambda: F.embedding_bag(indices, w_in, indptr[:-1], mode="sum",
                                             per_sample_weights=values))
        self._faster("first layer weight gradient (sparse)",
                     lambda: torch.sparse.mm(xt, g_in),
                     lambda: F.embedding_bag(row_of[by_item], g_in, offsets[:-1], mode="sum",
                                             per_sample_weights=values[by_item]))
        decoder = [latent] + hidden[::-1] + [n_items]
        layers = list(zip(hidden, hidden[1:] + [2 * latent], strict=True))
        layers += list(zip(decoder[:-1], decoder[1:], strict=True))
        self.small = ", ".join(f"{a}->{b}" for a, b in layers[:-1])
        for i, (d_in, d_out) in enumerate(layers):
            h, w, g = rand(n, d_in), rand(d_out, d_in), rand(n, d_out)
            out, out_t = torch.empty(n, d_out, device=device), torch.empty(d_out, n, device=device)
            grad_in, grad_w = torch.empty(n, d_in, device=device), torch.empty(d_out, d_in, device=device)
            name = "output layer" if d_out == n_items else f"layer {i}"
            self._faster(f"{name} forward {n}x{d_in} @ {d_in}x{d_out}",
                         lambda h=h, w=w, out=out: torch.mm(h, w.t(), out=out),
                         lambda h=h, w=w, out=out_t: torch.mm(w, h.t(), out=out))
            self.products[f"{name} input gradient {n}x{d_out} @ {d_out}x{d_in}"] = (
                lambda g=g, w=w, out=grad_in: torch.mm(g, w, out=out))
            self.products[f"{name} weight gradient {d_out}x{n} @ {n}x{d_in}"] = (
                lambda g=g, h=h, out=grad_w: torch.mm(g.t(), h, out=out))
        self.run()

    def _time(self, fn) -> float:
        _sync(self.device)
        start = time.perf_counter()
        fn()
        _sync(self.device)
        return time.perf_counter() - start

    def _faster(self, name: str, *candidates) -> None:
        best = min(candidates, key=lambda fn: min(self._time(fn) for _ in range(3)))
        self.products[name] = best

    def run(self) -> dict[str, float]:
        return {name: self._time(fn) for name, fn in self.products.items()}


def child_trainer(args) -> dict:
    """`train_model` itself, timed per update through its hooks: from `before_batch` to `on_update`
    is one batch gathered and one `train_step`. Stopped after warm-up + N updates on the big data;
    whole epochs on the small.

    --gemm: a GemmPass follows each counted update (timing run). Otherwise (memory run): after the
    warm-up, one evaluation of the validation users with the model's scorer (the GEMM passes
    would add their own buffers to the process's peak memory)."""
    import math

    import torch

    from multvae.metrics import score_heldout
    from multvae.model import make_scorer
    from multvae.training import train_model

    data = _dataset(args)
    per_epoch = math.ceil(data.train.shape[0] / BATCH_SIZE)
    updates = args.warmup + args.batches
    epochs = math.ceil(updates / per_epoch) if args.data == "small" else 1
    cfg, runtime = _config(args, epochs=epochs), _runtime(args)
    times: list[float] = []
    gemm: list[float] = []
    found: dict = {}
    started = [0.0]

    def evaluate(model) -> None:
        scorer = make_scorer(model, torch.device(args.device))
        heldout = data.validation
        score_heldout(scorer, type(heldout)(heldout.users[:50], heldout.foldin[:50], heldout.target[:50]), KS)
        start = time.perf_counter()
        table = score_heldout(scorer, heldout, KS, runtime.eval_batch_size)
        found.update(eval_seconds=time.perf_counter() - start, eval_users=len(table))
        model.train()

    def before_batch(step: int) -> None:
        _sync(args.device)
        started[0] = time.perf_counter()

    def on_update(step: int, model) -> bool:
        _sync(args.device)
        times.append(time.perf_counter() - started[0])
        found["model"] = model
        if len(times) == args.warmup and not args.gemm and "eval_seconds" not in found:
            evaluate(model)
        if len(times) > args.warmup and args.gemm and len(gemm) < len(times) - args.warmup:
            if "pass" not in found:  # built here: after train_model has set threads and allocator
                found["pass"] = GemmPass(data.train[:BATCH_SIZE], cfg.model, args.device)
            gemm.append(found["pass"].run())
        return len(times) >= updates and args.data != "small"

    result = train_model(cfg, data, seed=0, runtime=runtime, log=lambda line: None, on_update=on_update,
                         before_batch=before_batch)
    epoch_seconds = result.curves["seconds"].diff().fillna(result.curves["seconds"]).tolist() \
        if len(result.curves) else None
    if len(times) < updates:
        raise RuntimeError(f"the trainer made {len(times)} updates, expected {updates}")
    found.pop("pass", None)
    model = found.pop("model")
    if args.gemm and args.eval:
        evaluate(model)  # no separate memory run (ml-latest-small, --quick): evaluate here
    return {"updates": times[args.warmup:updates], "gemm": gemm[: args.batches], "per_epoch": per_epoch,
            "epoch_seconds": epoch_seconds if args.gemm else None, "items": data.n_items,
            "train_users": data.train.shape[0], "nnz": int(data.train.nnz), **found}


def child_dense(args) -> dict:
    """The dense-batch reference: what most public Mult-VAE implementations do, in plain PyTorch,
    in a process of its own (default allocator). A GemmPass follows each timed update."""
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    data = _dataset(args)
    cfg = _config(args).model
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train, n_items, device = data.train, data.n_items, torch.device(args.device)

    def mlp(dims):
        layers = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(dims) - 2 else [])
        return nn.Sequential(*layers)

    hidden, latent = list(cfg.hidden_dims), cfg.latent_dim
    encoder = mlp([n_items] + hidden + [2 * latent]).to(device)
    decoder = mlp([latent] + hidden[::-1] + [n_items]).to(device)
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    rng = np.random.default_rng(0)
    times: list[float] = []
    gemm: list[dict[str, float]] = []
    updates, step, products = args.warmup + args.batches, 0, None
    while len(times) < updates:
        order = rng.permutation(train.shape[0])
        for start in range(0, train.shape[0], BATCH_SIZE):
            if len(times) == updates:
                break
            t0 = time.perf_counter()
            x = torch.from_numpy(train[order[start:start + BATCH_SIZE]].toarray()).to(device)
            h = F.dropout(F.normalize(x, dim=1), cfg.dropout, training=True)
            out = encoder(h)
            mu, logvar = out[:, :latent], out[:, latent:]
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            logits = decoder(z)
            nll = -(F.log_softmax(logits, dim=1) * x).sum(dim=1).mean()
            kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0).sum(dim=1).mean()
            loss = nll + min(0.2, step / 200_000) * kl
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if not math.isfinite(loss.item()):
                raise RuntimeError("dense reference: non-finite loss")
            _sync(args.device)
            times.append(time.perf_counter() - t0)
            step += 1
            if len(times) > args.warmup:
                products = products or GemmPass(train[:BATCH_SIZE], cfg, args.device)
                gemm.append(products.run())
    return {"updates": times[args.warmup:], "gemm": gemm}


CHILDREN = {"data": child_data, "small-data": child_small_data, "trainer": child_trainer,
            "dense": child_dense}


def run_as_child(args) -> int:
    result = CHILDREN[args.child](args)
    import resource

    result["self_peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(args.work, f"{_tag(args)}.json").write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# The parent: runs the children one after another (it imports nothing heavy itself, so that
# a child's peak memory is its own), then prints the table.
# --------------------------------------------------------------------------------------------

def _tag(args) -> str:
    return "-".join([args.child, args.data] + [flag for flag in ("gemm", "compile") if getattr(args, flag)])


def _child(args, name: str, data: str = "synthetic", gemm: bool = False, compile: bool = False,
           evaluate: bool = False) -> dict:
    """Run one child; its result with `peak_rss_gb`, that child's peak resident memory (wait4)."""
    work = Path(args.work)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--data", data,
           "--work", str(work), "--shape", args.shape, "--threads", str(args.threads),
           "--batches", str(args.batches), "--warmup", str(args.warmup), "--device", args.device]
    cmd += ["--gemm"] if gemm else []
    cmd += ["--compile"] if compile else []
    cmd += ["--eval"] if evaluate else []
    tag = _tag(argparse.Namespace(child=name, data=data, gemm=gemm, compile=compile))
    print(f"  {tag} ...", end="", flush=True)
    log = work / f"{tag}.log"
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    print(f" {time.perf_counter() - start:.0f} s", flush=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark child `{name}` failed (exit {proc.returncode}):\n{log.read_text()[-4000:]}")
    result = json.loads((work / f"{tag}.json").read_text())
    result["process_peak_rss_gb"] = usage.ru_maxrss / 2**20
    return result


def _prepare(args) -> dict | None:
    """benchmarks/prepare.py's wall time and peak RSS (another engineer's benchmark), if present."""
    script = REPO / "benchmarks" / "prepare.py"
    if not script.is_file():
        return None
    cmd = [sys.executable, str(script)] + (["--size", "tiny"] if args.quick else [])
    print(f"  {script.name}{' --size tiny' if args.quick else ''} ...", end="", flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    print(f" {time.perf_counter() - start:.0f} s", flush=True)
    found = {}
    for key, pattern in (("seconds", r"^wall seconds\s+([\d.]+)"), ("rss_gb", r"^peak RSS GB\s+([\d.]+)"),
                         ("ratings", r"^ratings\s+([\d,]+)")):
        match = re.search(pattern, done.stdout, re.MULTILINE)
        if match:
            found[key] = match.group(1)
    if "rss_gb" not in found:
        return {"error": f"exit {done.returncode}: {(done.stdout + done.stderr)[-300:]}"}
    return found


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []
        self.failed = False

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        if ok is False:
            self.failed = True
        self.rows.append((name, value, target, "" if ok is None else ("PASS" if ok else "FAIL")))

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        print(f"{'':<{width}}  {'value':>10}  {'target':>8}  result")
        for name, value, target, result in self.rows:
            print(f"{name:<{width}}  {value:>10}  {target:>8}  {result}".rstrip())


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def _stats(times: list[float]) -> tuple[float, str]:
    # The median: one update stalled by another process should not move the epoch's estimate.
    return _median(times), f"median of {len(times)}, {min(times) * 1e3:.0f}-{max(times) * 1e3:.0f} ms"


def _over_gemm(run: dict) -> float:
    """Median over the timed updates of update time / the GEMM pass that followed it."""
    return _median([u / sum(p.values()) for u, p in zip(run["updates"], run["gemm"], strict=True)])


def _training_rows(table: Table, trainer: dict, dense: dict, targets: bool,
                   compiled: dict | None = None) -> None:
    """Rows of the trainer / dense reference / GEMM-only comparison. Each timed update was
    followed by one GEMM pass in the same process: ratios are medians of those pairs, so a load
    change during the run moves both sides of each."""
    per_epoch = trainer["per_epoch"]
    update, spread = _stats(trainer["updates"])
    table.add(f"trainer: one update ({spread})", _ms(update))
    table.add(f"trainer: epoch of {per_epoch} update(s), extrapolated", f"{update * per_epoch:.1f} s")
    if trainer.get("epoch_seconds"):
        table.add("trainer: epoch measured whole (with validation)", f"{min(trainer['epoch_seconds']):.2f} s")
    if compiled:
        c_update, c_spread = _stats(compiled["updates"])
        c_ratio, e_ratio = _over_gemm(compiled), _over_gemm(trainer)
        table.add(f"trainer, train.compile=true: one update ({c_spread})", _ms(c_update))
        table.add("  compiled / eager (each over its GEMM passes)", f"{c_ratio / e_ratio:.2f}")

    passes = trainer["gemm"]
    small = [name for name in passes[0] if name.startswith("layer ")]
    for name in passes[0]:
        if name not in small:
            table.add(f"  GEMM: {name}", _ms(_median([p[name] for p in passes])))
    table.add(f"  GEMM: the {len(small) // 3} hidden layers' products together",
              _ms(_median([sum(p[name] for name in small) for p in passes])))
    gemm = _median([sum(p.values()) for p in passes])
    table.add(f"GEMM-only: one update (median of {len(passes)} passes)", _ms(gemm))
    table.add(f"GEMM-only: epoch of {per_epoch} update(s)", f"{gemm * per_epoch:.1f} s")
    ratio = _over_gemm(trainer)
    target = f"<= {MAX_EPOCH_OVER_GEMM}" if targets else ""
    table.add("  trainer epoch / GEMM-only epoch (median of update/pass pairs)", f"{ratio:.2f}", target,
              ratio <= MAX_EPOCH_OVER_GEMM if targets else None)

    dense_update, dense_spread = _stats(dense["updates"])
    dense_gemm = _median([sum(p.values()) for p in dense["gemm"]])
    table.add(f"dense reference: one update ({dense_spread})", _ms(dense_update))
    table.add(f"dense reference: epoch of {per_epoch} update(s), extrapolated",
              f"{dense_update * per_epoch:.1f} s")
    table.add("  GEMM passes in the dense run / in the trainer run (1.00: same load)",
              f"{dense_gemm / gemm:.2f}")
    raw = dense_update / update
    normalised = (dense_update / dense_gemm) / ratio
    table.add("  dense reference / trainer, raw", f"{raw:.2f}x")
    table.add("  dense reference / trainer, each over its GEMM passes", f"{normalised:.2f}x")
    speedup = min(raw, normalised)
    table.add("  speed-up of the trainer over the dense reference (lower of the two)", f"{speedup:.2f}x",
              f">= {MIN_SPEEDUP_OVER_DENSE}x" if targets else "",
              speedup >= MIN_SPEEDUP_OVER_DENSE if targets else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small shape and few updates (< 1 minute)")
    parser.add_argument("--batches", type=int, default=None, help="timed updates (default 20, quick 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed updates first (quick: 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile", action="store_true",
                        help="also time the trainer with train.compile=true")
    parser.add_argument("--no-small", action="store_true", help="skip ml-latest-small")
    parser.add_argument("--no-prepare", action="store_true", help="skip benchmarks/prepare.py")
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--gemm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--eval", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--data", default="synthetic", choices=["synthetic", "small"], help=argparse.SUPPRESS)
    parser.add_argument("--shape", default="ml-20m", choices=list(SHAPES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_as_child(args)

    args.shape = "quick" if args.quick else "ml-20m"
    args.batches = args.batches or (5 if args.quick else 20)
    args.warmup = min(args.warmup, 1) if args.quick else args.warmup
    if not args.threads:
        probe = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
        args.threads = int(subprocess.run(probe, capture_output=True, text=True, check=True).stdout)
    small = not args.no_small and (ML_LATEST_SMALL / "ratings.csv.gz").is_file()
    load_start = _load()
    print(f"load average at start: {load_start}")
    with tempfile.TemporaryDirectory(prefix="multvae-speed-") as tmp:
        args.work = tmp
        data = _child(args, "data")
        # --quick saves a process start (5 s of imports): the timing run evaluates, and its peak
        # memory includes the GEMM passes' buffers.
        trainer = _child(args, "trainer", gemm=True, evaluate=args.quick)
        dense = _child(args, "dense")
        memory = trainer if args.quick else _child(args, "trainer")
        compiled = _child(args, "trainer", gemm=True, compile=True) if args.compile else None
        if small:
            _child(args, "small-data", "small")
            small_runs = {"trainer": _child(args, "trainer", "small", gemm=True, evaluate=True),
                          "dense": _child(args, "dense", "small")}
        prepare = None if args.no_prepare else _prepare(args)
    load_end = _load()
    busy = max(os.getloadavg()[0], float(load_start.split()[0])) > 1.5 * (os.cpu_count() or 1)

    shape = "ML-20M shape" if args.shape == "ml-20m" else "quick (small) shape"
    print(f"\nMult-VAE speed, {shape}: random CSR, {data['users']:,} training users x "
          f"{data['items']:,} items, "
          f"{data['nnz']:,} non-zeros ({data['density']:.2%} dense, power-law item popularity); "
          f"{data['heldout']:,} validation and as many test users")
    print(f"[I, 600, 200] architecture, batch {BATCH_SIZE}, Adam; {args.threads} thread(s), {args.device}; "
          f"load average {load_start} at start, {load_end} at end\n")
    table = Table()
    targets = args.shape == "ml-20m"
    _training_rows(table, trainer, dense, targets=targets, compiled=compiled)
    eval_ok = memory["eval_seconds"] < MAX_EVAL_SECONDS
    table.add(f"evaluation: {memory['eval_users']:,} users x {memory['items']:,} items, top-100 + metrics",
              f"{memory['eval_seconds']:.2f} s", f"< {MAX_EVAL_SECONDS:g} s", eval_ok)
    extra = ", GEMM passes" if args.quick else ""
    table.add(f"peak RSS: training (load_dataset, model, Adam, updates, evaluation{extra})",
              f"{memory['process_peak_rss_gb']:.2f} GB", f"< {MAX_TRAIN_RSS_GB:g} GB",
              memory["process_peak_rss_gb"] < MAX_TRAIN_RSS_GB)
    table.add("peak RSS: dense reference process (with its GEMM passes)",
              f"{dense['process_peak_rss_gb']:.2f} GB")
    if prepare is None:
        table.add("peak RSS: prepare stage", "n/a (benchmarks/prepare.py absent or skipped)")
    elif "error" in prepare:
        table.add("peak RSS: prepare stage (benchmarks/prepare.py failed)", "n/a",
                  f"< {MAX_TRAIN_RSS_GB:g} GB", False)
        print(prepare["error"], file=sys.stderr)
    else:
        rss = float(prepare["rss_gb"])
        table.add(f"peak RSS: prepare stage ({prepare.get('ratings', '?')} ratings, benchmarks/prepare.py)",
                  f"{rss:.2f} GB", f"< {MAX_TRAIN_RSS_GB:g} GB", rss < MAX_TRAIN_RSS_GB)
        table.add("  prepare stage wall time", f"{float(prepare['seconds']):.1f} s")
    table.print()
    if busy:
        waits = " and each parallel operation may wait for a core" if args.threads > 1 else ""
        print(f"\nWARNING: the load average exceeded 1.5 per core during the run: other processes took CPU "
              f"time{waits}. Compare only ratios; re-run when the machine is quiet (or with --threads 1).")
    if small:
        s_trainer = small_runs["trainer"]
        print(f"\nml-latest-small (real ratings, multvae.split.split, 60 held-out users per set): "
              f"{s_trainer['train_users']:,} training users x {s_trainer['items']:,} items, "
              f"{s_trainer['nnz']:,} non-zeros")
        small_table = Table()
        _training_rows(small_table, s_trainer, small_runs["dense"], targets=False)
        small_table.add(f"evaluation: {s_trainer['eval_users']} users", _ms(s_trainer["eval_seconds"]))
        small_table.print()
    if not targets:
        print("\n--quick: a smoke check at a small shape; the targets apply to the ML-20M shape only.")
        return 0
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
