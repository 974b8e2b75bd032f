"""The training loop: batches streamed from the sparse training matrix, validation each epoch,
the best epoch's weights kept, and a checkpoint each epoch so that a killed run resumes.

Resuming restores the model, the optimiser, every random generator and the log, so an
interrupted run ends with exactly the metrics of an uninterrupted one.

Speed (benchmarks/speed.py measures it): the training matrix is held as tensors on the training
device and each batch's rows are gathered there; the model's first layer and loss touch only the
batch's non-zeros; Adam is the fused kernel; freed large blocks are kept by the allocator for
reuse. At ML-20M shape an epoch then costs little more than its matrix products.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from multvae.atomic import atomic_path
from multvae.config import BetaConfig, Config, from_dict, to_dict
from multvae.data import Dataset, HeldOut
from multvae.metrics import metric_names, score_heldout
from multvae.model import MultVAE, SparseBatch, SparseRows, decode_nll, kl_divergence, plain_decode_nll
from multvae.schedules import user_betas


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message names the epoch and batch."""


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    best_validation: dict[str, float]
    curves: pd.DataFrame
    seconds: float


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def keep_freed_memory() -> bool:
    """Have glibc keep freed large blocks for reuse instead of handing them back to the kernel.

    Each update at ML-20M shape allocates and frees tensors of 40-100 MB (the logits, their
    gradient, the weight gradients), and each evaluation batch its scores. By default glibc maps
    each such block afresh with mmap and unmaps it on free, so every update pays page faults on
    some 400 MB of new memory: measured here, 15-25% of an update's time. With the thresholds
    raised the blocks come from the heap and are reused; the peak resident memory grows by about
    0.1 GB at ML-20M shape (and the process keeps it). Process-wide; False where the C library
    is not glibc, and then it changes nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 2**30) and libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def make_optimizer(model: MultVAE, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "adam":
        # The fused kernel is ~8x faster than the default on CPU for the 24M-parameter model.
        return torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, fused=True)
    return torch.optim.SGD(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)


def make_scorer(model: MultVAE, device: torch.device) -> Callable[[sp.csr_matrix], torch.Tensor]:
    """Scores of a fold-in batch: the decoder's logits at the posterior mean."""
    keep_freed_memory()  # each batch's scores are 100+ MB: reuse the blocks rather than fault them in

    def score(foldin: sp.csr_matrix) -> torch.Tensor:
        model.eval()
        logits, _, _ = model(SparseBatch.from_scipy(foldin, device))
        return logits

    return score


DecodeNLL = Callable[[MultVAE, torch.Tensor, SparseBatch], torch.Tensor]


def compiled_decode_nll(model: MultVAE) -> DecodeNLL:
    """train.compile: the decoder and the loss through torch.compile (a C++ compiler is needed;
    the first batches take seconds to compile). Off by default: at ML-20M shape on a 2-core CPU
    it was not faster than the eager path, whose loss is already a single fused pass each way."""
    compiled = torch.compile(functools.partial(plain_decode_nll, model.decoder))

    def run(model: MultVAE, z: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        return compiled(z, batch.rows, batch.indices, batch.counts.to(z.dtype))

    return run


def train_step(model: MultVAE, optimizer: torch.optim.Optimizer, batch: SparseBatch, beta: BetaConfig,
               step: int, total_steps: int, nll_fn: DecodeNLL = decode_nll) -> np.ndarray:
    """One update on `batch` (update number `step`, 0-based); returns the batch's mean loss, NLL,
    KL and β. A non-finite loss is returned without an update, for the caller to report."""
    mu, logvar = model.encode(batch)
    nll = nll_fn(model, model.sample(mu, logvar), batch).mean()
    kl = kl_divergence(mu, logvar)
    betas = user_betas(beta, step, total_steps, batch.counts)
    loss = nll + (betas * kl).mean()
    # One transfer (a sync on a GPU) per update for the log and the finiteness check.
    stats = torch.stack([loss, nll, kl.mean(), betas.mean()]).detach().cpu().numpy()
    if not np.isfinite(stats[0]):
        return stats
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return stats


def evaluate(model: MultVAE, heldout: HeldOut, cfg: Config, device: torch.device) -> pd.DataFrame:
    return score_heldout(make_scorer(model, device), heldout, cfg.eval.ks, cfg.train.eval_batch_size)


def fingerprint(cfg: Config, seed: int, n_train: int, n_items: int) -> str:
    """What a checkpoint must match to be resumed: the full config, the seed and the data shape."""
    payload = json.dumps({"config": to_dict(cfg), "seed": seed, "shape": [n_train, n_items]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_model(cfg: Config, data: Dataset, seed: int, checkpoint: Path | None = None,
                log: Callable[[str], None] = print) -> TrainResult:
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    keep_freed_memory()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = SparseRows(data.train, device)
    n_users = data.train.shape[0]
    batch_size = cfg.train.batch_size
    batches_per_epoch = math.ceil(n_users / batch_size)
    total_steps = batches_per_epoch * cfg.train.epochs
    model = MultVAE(data.n_items, cfg.model).to(device)
    optimizer = make_optimizer(model, cfg, device)
    nll_fn = compiled_decode_nll(model) if cfg.train.compile else decode_nll
    val_key = f"val_{metric_names(cfg.eval.ks)[0]}"
    names = metric_names(cfg.eval.ks)

    start_epoch, step, seconds = 1, 0, 0.0
    rows: list[dict] = []
    best_epoch, best_score, best_state, best_val = 0, -math.inf, None, {}
    key = fingerprint(cfg, seed, n_users, data.n_items)
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("fingerprint") == key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] is not None and device.type == "cuda":
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            rng.bit_generator.state = state["numpy_rng"]
            start_epoch, step, seconds = state["epoch"] + 1, state["step"], state["seconds"]
            rows = state["curves"]
            best_epoch, best_score = state["best_epoch"], state["best_score"]
            best_state, best_val = state["best_state"], state["best_val"]
            log(f"resuming from {checkpoint} after epoch {state['epoch']}")
        else:
            log(f"ignoring {checkpoint}: it was written for other parameters or data")

    for epoch in range(start_epoch, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(n_users)
        sums = {"loss": 0.0, "nll": 0.0, "kl": 0.0, "beta": 0.0}
        for b, start in enumerate(range(0, n_users, batch_size)):
            batch = train.batch(order[start:start + batch_size])
            stats = train_step(model, optimizer, batch, cfg.beta, step, total_steps, nll_fn)
            if not np.isfinite(stats[0]):
                raise TrainingError(
                    f"non-finite loss ({stats[0]}) at epoch {epoch}, batch {b + 1} of "
                    f"{batches_per_epoch} (update {step + 1}); lower optim.lr or check the data"
                )
            step += 1
            for name, value in zip(sums, stats, strict=True):
                sums[name] += float(value)
        val = evaluate(model, data.validation, cfg, device)
        val_means = {f"val_{n}": float(val[n].mean()) for n in names}
        seconds += time.perf_counter() - t0
        row = {"seed": seed, "epoch": epoch, **{k: v / batches_per_epoch for k, v in sums.items()},
               **val_means, "seconds": round(seconds, 3)}
        rows.append(row)
        improved = val_means[val_key] > best_score
        if improved:
            best_epoch, best_score, best_val = epoch, val_means[val_key], val_means
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        log(f"epoch {epoch:>3}/{cfg.train.epochs}  loss {row['loss']:.2f}  beta {row['beta']:.3f}  "
            f"{val_key} {val_means[val_key]:.4f}  best {best_score:.4f} (epoch {best_epoch})  "
            f"{time.perf_counter() - t0:.1f}s")
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {
                "fingerprint": key, "epoch": epoch, "step": step, "seconds": seconds,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "numpy_rng": rng.bit_generator.state,
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                "curves": rows, "best_epoch": best_epoch, "best_score": best_score,
                "best_state": best_state, "best_val": best_val,
            })
    return TrainResult(state_dict=best_state, best_epoch=best_epoch, best_validation=best_val,
                       curves=pd.DataFrame(rows), seconds=seconds)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[MultVAE, dict]:
    """A trained model and its metadata, as written by `save_model`."""
    saved = torch.load(path, map_location=device, weights_only=True)
    cfg = from_dict(saved["config"])
    model = MultVAE(saved["n_items"], cfg.model).to(device)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model, saved


def save_model(path: Path, result: TrainResult, cfg: Config, n_items: int, seed: int) -> None:
    """Best weights plus what evaluation and `recommend` need to rebuild and describe the model."""
    with atomic_path(path) as tmp:
        torch.save({
            "state_dict": result.state_dict, "config": to_dict(cfg), "n_items": n_items, "seed": seed,
            "best_epoch": result.best_epoch, "best_validation": result.best_validation,
            "seconds": result.seconds,
        }, tmp)
