"""The training loop: batches streamed from the sparse training matrix, validation each epoch,
the best epoch's weights kept, and checkpoints (at most one each runtime.checkpoint_seconds, and
after the last epoch) so that a killed run resumes.

Resuming restores the model, the optimiser, every random generator and the log, so an
interrupted run ends with exactly the metrics of an uninterrupted one.

Speed (benchmarks/speed.py measures it): the training matrix is held as tensors on the training
device and each batch's rows are gathered there from an epoch order moved there once; the model's
first layer and loss touch only the batch's non-zeros; Adam is the fused kernel. The loss
statistics stay on the device until the epoch ends, so on a GPU the host queues update after
update without waiting for one (tests/test_gpu.py checks that an update makes no synchronising
call); a non-finite loss is still reported with the update where it first appeared.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multvae.atomic import atomic_path
from multvae.config import Config, RuntimeConfig, to_dict
from multvae.data import Dataset, HeldOut
from multvae.errors import MultVAEError
from multvae.metrics import metric_names, score_heldout, val_key
from multvae.model import MultVAE, SparseBatch, SparseRows, decode_nll, make_scorer, plain_decode_nll
from multvae.model_file import torch_write, weights_digest
from multvae.params import defaults
from multvae.prior import composite_kl, standard_kl
from multvae.runtime import setup
from multvae.schedules import user_betas


class TrainingError(MultVAEError, RuntimeError):
    """Training cannot go on (a non-finite loss); the message names the epoch and batch."""


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor] | None  # None only when stopped before the first epoch ended
    best_epoch: int
    best_validation: dict[str, float]
    curves: pd.DataFrame
    seconds: float
    diverged: str | None = None  # why training stopped early: the non-finite loss, where it appeared


def make_optimizer(model: MultVAE, cfg: Config) -> torch.optim.Optimizer:
    """One optimiser over every trained parameter. In RecVAE's alternating scheme a phase freezes
    the other half, whose parameters then get no gradient and are skipped: the same as RecVAE's
    two optimisers, since Adam keeps its moments and step count per parameter."""
    o, params = cfg.optim, model.trained_parameters()
    if o.name == "adam":
        # The fused kernel is ~8x faster than the default on CPU for the 24M-parameter model.
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay)


DecodeNLL = Callable[[MultVAE, torch.Tensor, SparseBatch], torch.Tensor]


def compiled_decode_nll(model: MultVAE) -> DecodeNLL:
    """runtime.compile: the decoder and the loss through torch.compile (a C++ compiler is needed;
    the first batches take seconds to compile). Off by default: at ML-20M shape on a 2-core CPU
    it was not faster than the eager path, whose loss is already a single fused pass each way."""
    compiled = torch.compile(functools.partial(plain_decode_nll, model.decoder))

    def run(model: MultVAE, z: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        return compiled(z, batch.rows, batch.indices, batch.counts.to(z.dtype))

    return run


def train_step(model: MultVAE, optimizer: torch.optim.Optimizer, batch: SparseBatch, cfg: Config,
               step: int, total_steps: int, nll_fn: DecodeNLL = decode_nll,
               dropout: float | None = None) -> torch.Tensor:
    """One update on `batch` (update number `step`, 0-based) of the parameters that require a
    gradient; returns the batch's mean loss, NLL, KL and β as a tensor on the training device, never
    read here: reading it would make a GPU wait for the update to finish before the next could be
    queued. A non-finite loss is the caller's to detect (EpochStats), and makes the weights
    non-finite too. `dropout` overrides the input dropout (RecVAE's decoder passes use none)."""
    mu, logvar = model.encode(batch, dropout)
    z = model.sample(mu, logvar)
    nll = nll_fn(model, z, batch).mean()
    if cfg.model.prior == "composite":
        old_mu, old_logvar = model.previous_posterior(batch)
        kl = composite_kl(z, mu, logvar, old_mu, old_logvar, cfg.model.prior_weights)
    else:
        kl = standard_kl(mu, logvar)
    betas = user_betas(cfg.beta, step, total_steps, batch.counts)
    loss = nll + (betas * kl).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return torch.stack([loss, nll, kl.mean(), betas.mean()]).detach()


@dataclass(frozen=True)
class Phase:
    """Passes over the training users within an epoch that update some of the parameters."""

    passes: int
    train_encoder: bool
    train_decoder: bool
    dropout: float | None  # None: model.dropout


def epoch_phases(cfg: Config) -> list[Phase]:
    """The paper: one pass updating everything. RecVAE's alternating scheme: encoder passes (with
    the input dropout: denoising), then decoder passes (without it, unless optim.decoder_dropout)."""
    o = cfg.optim
    if o.scheme == "joint":
        return [Phase(1, True, True, None)]
    return [Phase(o.encoder_passes, True, False, None),
            Phase(o.decoder_passes, False, True, None if o.decoder_dropout else 0.0)]


def updates_per_epoch(cfg: Config, n_users: int) -> int:
    return math.ceil(n_users / cfg.train.batch_size) * sum(phase.passes for phase in epoch_phases(cfg))


def epoch_count(cfg: Config, n_users: int) -> int:
    """Epochs to run: train.epochs counts passes over the training users, and an epoch holds every
    phase's passes (RecVAE's 3 + 1), so 200 passes are 50 alternating epochs or 200 joint ones;
    then more epochs, if needed, until the run makes train.min_updates updates."""
    epochs = math.ceil(cfg.train.epochs / sum(phase.passes for phase in epoch_phases(cfg)))
    return max(epochs, math.ceil(cfg.train.min_updates / updates_per_epoch(cfg, n_users)))


def _train_only(model: MultVAE, phase: Phase) -> None:
    """Freeze what this phase does not update: no gradient is computed for it, and Adam skips a
    parameter without a gradient (its moments and step count stay as they are)."""
    for p in model.encoder_parameters():
        p.requires_grad_(phase.train_encoder)
    for p in model.decoder.parameters():
        p.requires_grad_(phase.train_decoder)


class EpochStats:
    """An epoch's sums of loss, NLL, KL and β, and its first update with a non-finite loss, kept on
    the training device and read once, at the end of the epoch (one synchronisation an epoch on
    a GPU, none per update). Summed in float64 in update order: the same numbers as adding each
    update's float32 values on the host."""

    NAMES = ("loss", "nll", "kl", "beta")
    NONE = torch.iinfo(torch.int64).max

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(len(self.NAMES), dtype=torch.float64, device=device)
        self.first_bad = torch.full((), self.NONE, dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), dtype=torch.float32, device=device)

    def add(self, stats: torch.Tensor, update: int) -> None:
        self.sums += stats.to(torch.float64)
        bad = ~torch.isfinite(stats[0]) & (self.first_bad == self.NONE)
        self.first_bad = torch.where(bad, update, self.first_bad)
        self.bad_loss = torch.where(bad, stats[0], self.bad_loss)

    def read(self) -> tuple[dict[str, float], int | None, float]:
        """The sums, the first non-finite update (None if every loss was finite) and its loss."""
        first = int(self.first_bad)
        sums = dict(zip(self.NAMES, self.sums.tolist(), strict=True))
        return sums, (None if first == self.NONE else first), float(self.bad_loss)


def evaluate(model: MultVAE, heldout: HeldOut, cfg: Config, runtime: RuntimeConfig,
             device: torch.device) -> pd.DataFrame:
    return score_heldout(make_scorer(model, device), heldout, cfg.eval.ks, runtime.eval_batch_size)


def resume_key(cfg: Config, seed: int, data_fingerprint: str) -> str:
    """What a checkpoint must match to be resumed: the result-defining config, the seed and the data.
    Execution settings (runtime.*) are not part of it: a run may resume on more threads."""
    payload = json.dumps({"config": to_dict(cfg), "seed": seed, "data": data_fingerprint}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh, torch_write(path, state["model"]):
        torch.save({**state, "model_sha256": weights_digest(state["model"])}, fh)


def _read_checkpoint(path: Path, device: torch.device, log: Callable[[str], None]) -> dict | None:
    """The checkpoint's state, or None. One that cannot be read (truncated, corrupt) or whose
    weights differ from the digest written with them is set aside under a new name, not deleted, and
    training starts afresh."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(state, dict) or "fingerprint" not in state:
            raise ValueError("not a training checkpoint")
        if weights_digest(state["model"]) != state.get("model_sha256"):
            raise ValueError("its weights differ from the digest written with them")
        return state
    except Exception as exc:  # torch raises many types for a damaged file (pickle, zip, EOF, runtime)
        aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        os.replace(path, aside)
        log(f"checkpoint {path} cannot be read ({type(exc).__name__}); set aside as {aside.name}, "
            "starting afresh")
        return None


def _divergence(stats: EpochStats, epoch: int, first_step: int, batches_per_epoch: int) -> str | None:
    """Where the epoch's loss first went non-finite, or None if it stayed finite."""
    _, bad, loss = stats.read()
    if bad is None:
        return None
    return (f"non-finite loss ({loss}) at epoch {epoch}, batch {bad - first_step + 1} of "
            f"{batches_per_epoch} (update {bad + 1})")


UpdateHook = Callable[[int, MultVAE], bool]
"""Called after each update with the number of updates made so far; True stops training there."""
BatchHook = Callable[[int], None]
"""Called before each batch is gathered, with the number of updates made so far."""
EpochHook = Callable[[dict], None]
"""Called with each epoch's log row (epoch, loss, β, validation metrics, seconds), in order: on a
resumed run first with every row restored from the checkpoint, so a log kept by the hook ends
equal to an uninterrupted run's."""


def train_model(cfg: Config, data: Dataset, seed: int, runtime: RuntimeConfig | None = None,
                checkpoint: Path | None = None, log: Callable[[str], None] = print,
                on_update: UpdateHook | None = None, before_batch: BatchHook | None = None,
                on_epoch: EpochHook | None = None) -> TrainResult:
    """Train for `epoch_count` epochs and return the best epoch's weights. The hooks let benchmarks
    and tests time, inspect or stop single updates.

    A non-finite loss ends training like early stopping: the best epoch before it is the result and
    `diverged` says where (a step size in a tuning grid may diverge on some seeds: that is a result
    to report, not a reason to lose the study). In the first epoch there is no such epoch, and it
    is an error. No checkpoint of the damaged weights is written."""
    runtime = runtime or defaults()[1]  # conf/config.yaml's, for tests and tools
    device = setup(runtime)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = SparseRows(data.train, device)
    n_users = data.train.shape[0]
    batch_size = cfg.train.batch_size
    phases = epoch_phases(cfg)
    batches_per_epoch = updates_per_epoch(cfg, n_users)
    epochs = epoch_count(cfg, n_users)
    total_steps = batches_per_epoch * epochs
    model = MultVAE(data.n_items, cfg.model).to(device)
    optimizer = make_optimizer(model, cfg)
    nll_fn = compiled_decode_nll(model) if runtime.compile else decode_nll
    names = metric_names(cfg.eval.ks)
    key_metric = val_key(cfg.eval.ks)

    start_epoch, step, seconds = 1, 0, 0.0
    rows: list[dict] = []
    best_epoch, best_score, best_state, best_val = 0, -math.inf, None, {}
    key = resume_key(cfg, seed, data.fingerprint)
    state = None
    if checkpoint is not None and checkpoint.is_file():
        state = _read_checkpoint(checkpoint, device, log)
    if state is not None and state["fingerprint"] != key:
        log(f"ignoring {checkpoint}: it was written for other parameters or data")
    elif state is not None:
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
    if on_epoch is not None:
        for restored in rows:
            on_epoch(restored)

    saved_at = time.monotonic()  # checkpoints on a time budget: a full one is large at ML-20M
    for epoch in range(start_epoch, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        epoch_stats, first_step = EpochStats(device), step
        for phase in phases:
            if len(phases) > 1:
                _train_only(model, phase)
            for _ in range(phase.passes):
                epoch_rows = train.epoch(rng.permutation(n_users))
                for start in range(0, n_users, batch_size):
                    if before_batch is not None:
                        before_batch(step)
                    batch = epoch_rows.batch(start, start + batch_size)
                    stats = train_step(model, optimizer, batch, cfg, step, total_steps, nll_fn, phase.dropout)
                    epoch_stats.add(stats, step)
                    step += 1
                    if on_update is not None and on_update(step, model):
                        diverged = _divergence(epoch_stats, epoch, first_step, batches_per_epoch)
                        return TrainResult(best_state, best_epoch, best_val, pd.DataFrame(rows), seconds,
                                           diverged)
            if phase.train_encoder:
                model.update_previous()
        diverged = _divergence(epoch_stats, epoch, first_step, batches_per_epoch)
        if diverged is not None and best_state is None:
            raise TrainingError(f"{diverged}; lower optim.lr or check the data")
        if diverged is not None:
            log(f"{diverged}: training stops, keeping epoch {best_epoch} (the best before it)")
            return TrainResult(best_state, best_epoch, best_val, pd.DataFrame(rows), seconds, diverged)
        sums = epoch_stats.read()[0]
        val = evaluate(model, data.validation, cfg, runtime, device)
        val_means = {f"val_{n}": float(val[n].mean()) for n in names}
        seconds += time.perf_counter() - t0
        row = {"seed": seed, "epoch": epoch, **{k: v / batches_per_epoch for k, v in sums.items()},
               **val_means, "seconds": round(seconds, 3)}
        rows.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if val_means[key_metric] > best_score:
            best_epoch, best_score, best_val = epoch, val_means[key_metric], val_means
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        log(f"epoch {epoch:>3}/{epochs}  loss {row['loss']:.2f}  beta {row['beta']:.3f}  "
            f"{key_metric} {val_means[key_metric]:.4f}  best {best_score:.4f} (epoch {best_epoch})  "
            f"{time.perf_counter() - t0:.1f}s")
        due = time.monotonic() - saved_at >= runtime.checkpoint_seconds or epoch == epochs
        if checkpoint is not None and due:
            saved_at = time.monotonic()
            _save_checkpoint(checkpoint, {
                "fingerprint": key, "epoch": epoch, "step": step, "seconds": seconds,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "numpy_rng": rng.bit_generator.state,
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                "curves": rows, "best_epoch": best_epoch, "best_score": best_score,
                "best_state": best_state, "best_val": best_val,
            })
    return TrainResult(best_state, best_epoch, best_val, pd.DataFrame(rows), seconds)
