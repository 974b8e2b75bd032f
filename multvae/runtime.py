"""Where and how a computation runs: device, CPU threads, allocator. None of it changes results.

These settings come from the `runtime:` section of params.yaml, which no stage lists among its
parameters, so changing the thread count or moving to a GPU reruns nothing that is cached.
"""

from __future__ import annotations

import ctypes

import torch

from multvae.config import RuntimeConfig
from multvae.errors import MultVAEError


class DeviceError(MultVAEError):
    """The requested device is not available."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("runtime.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def keep_freed_memory() -> bool:
    """Have glibc keep freed large blocks for reuse instead of handing them back to the kernel.

    Each update at ML-20M shape allocates and frees tensors of 40-100 MB (the logits, their
    gradient, the weight gradients), and each evaluation batch its scores. By default glibc maps
    each such block afresh with mmap and unmaps it on free, so every update pays page faults on
    them (benchmarks/speed.py measures the effect). With the thresholds raised the blocks come
    from the heap and are reused; the process keeps its peak. Process-wide; False where the C
    library is not glibc, and then it changes nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 2**30) and libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def setup(runtime: RuntimeConfig) -> torch.device:
    """Apply the thread count and allocator settings; return the device to compute on."""
    device = resolve_device(runtime.device)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    keep_freed_memory()
    return device
