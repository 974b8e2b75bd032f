"""A trained model on disk: its weights, the configuration that rebuilds it, and what binds it to
its data (the movie id of every output column and the prepared split's fingerprint).

A model is only meaningful on the items it was trained on: column j of its output is one movie.
Evaluating or recommending with it on another split (another seed, another source) would answer
with the wrong movies without a word, so `load_model` refuses data whose fingerprint differs. The
file also vouches for itself: a SHA-256 of the weights is written with them and checked on every
load, and the configuration it was trained with is compared with the one a stage asks for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multvae.atomic import atomic_path, write_failure
from multvae.config import Config, from_dict, to_dict
from multvae.errors import MultVAEError
from multvae.model import MultVAE

FORMAT = 4  # 3: the weights' digest; 4: the epochs trained and where training diverged


class ModelFileError(MultVAEError):
    """A model file is missing, unreadable, or belongs to other data; the message says what to run."""


@dataclass(frozen=True)
class SavedModel:
    """What `save_model` writes besides the weights."""

    config: Config
    seed: int
    movie_ids: np.ndarray  # movieId of each output column
    data_fingerprint: str
    best_epoch: int
    best_validation: dict[str, float]
    fold: int = 0
    epochs: int = 0  # epochs trained: train.epochs' (or train.min_updates'), fewer if it diverged
    diverged: str | None = None  # where the loss went non-finite, if it did (training.TrainResult)

    @property
    def n_items(self) -> int:
        return int(self.movie_ids.size)


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def trained_settings(cfg: Config) -> dict[str, Any]:
    """What a variant's train stage computes from: its model, β, optimiser and training sections
    (the seed list aside: a model is one seed's) and the cut-offs that choose its best epoch. The
    data is checked by the split's fingerprint instead."""
    plain = to_dict(cfg)
    train = {k: v for k, v in plain["train"].items() if k != "seeds"}
    return {"model": plain["model"], "beta": plain["beta"], "optim": plain["optim"], "train": train,
            "eval": {"ks": plain["eval"]["ks"]}}


def _differences(saved: dict[str, Any], asked: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(asked)):
        a, b = saved.get(key), asked.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} (asked: {b!r})")
    return out


@contextmanager
def torch_write(target: Path, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """torch.save reports a failed write (a full disk) as a RuntimeError of its zip writer
    ("unexpected pos …"); turn that into one line naming the output and the space it needed."""
    try:
        yield
    except RuntimeError as exc:
        needed = sum(t.numel() * t.element_size() for t in tensors.values())
        raise write_failure(Path(target), f"torch could not write it: {str(exc).splitlines()[0][:80]}",
                            needed) from None


def save_model(path: Path, state_dict: dict[str, torch.Tensor], meta: SavedModel) -> None:
    # Through a file object: torch.save(obj, path) stores the temporary's random name inside the
    # archive, so identical runs would write different bytes and DVC would see a new model.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh, torch_write(path, state_dict):
        torch.save({
            "format": FORMAT, "state_dict": state_dict, "config": to_dict(meta.config), "seed": meta.seed,
            "movie_ids": torch.tensor(np.asarray(meta.movie_ids, dtype=np.int64)),
            "data_fingerprint": meta.data_fingerprint, "best_epoch": meta.best_epoch,
            "best_validation": meta.best_validation, "fold": meta.fold, "epochs": meta.epochs,
            "diverged": meta.diverged,
            "weights_sha256": weights_digest(state_dict),
        }, fh)


def _read(path: Path, device: torch.device | str) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file (pickle, zip, runtime)
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        found = saved.get("format") if isinstance(saved, dict) else None
        raise ModelFileError(f"{path}: written by another version of multvae (format {found!r}, "
                             f"expected {FORMAT}); retrain it")
    if weights_digest(saved["state_dict"]) != saved.get("weights_sha256"):
        raise ModelFileError(f"{path}: its weights do not match the SHA-256 written with them: the file was "
                             "changed or damaged after training; retrain it")
    return saved


def load_model(path: Path, device: torch.device | str, data_fingerprint: str | None,
               retrain_hint: str, expected: Config | None = None) -> tuple[MultVAE, SavedModel]:
    """The model in eval mode and its metadata. With `data_fingerprint`, the model must have been
    trained on exactly that prepared split, and with `expected`, with that configuration's
    `trained_settings`; otherwise the error names what differs and says to run `retrain_hint`."""
    saved = _read(Path(path), device)
    meta = SavedModel(
        config=from_dict(saved["config"]), seed=int(saved["seed"]),
        movie_ids=saved["movie_ids"].cpu().numpy(), data_fingerprint=str(saved["data_fingerprint"]),
        best_epoch=int(saved["best_epoch"]), best_validation=dict(saved["best_validation"]),
        fold=int(saved["fold"]), epochs=int(saved["epochs"]), diverged=saved["diverged"],
    )
    if data_fingerprint is not None and meta.data_fingerprint != data_fingerprint:
        raise ModelFileError(
            f"{path} was trained on another prepared split (data fingerprint {meta.data_fingerprint}, "
            f"the data given has {data_fingerprint}): its columns are other movies; run `{retrain_hint}`")
    if expected is not None:
        differ = _differences(trained_settings(meta.config), trained_settings(expected))
        if differ:
            shown = "; ".join(differ[:3]) + (" …" if len(differ) > 3 else "")
            raise ModelFileError(f"{path} was trained with other settings than asked for: {shown}; "
                                 f"run `{retrain_hint}`")
    model = MultVAE(meta.n_items, meta.config.model).to(device)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model, meta
