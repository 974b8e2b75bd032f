"""The versions of Python and of the libraries that compute a study's results, recorded beside
them, so that a reproduction with other versions can tell where a difference may come from."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

# What the numbers depend on: training (torch), the split and statistics (numpy, scipy), the
# tables (pandas, pyarrow) and the pipeline that ran them (dvc).
PACKAGES = ("torch", "numpy", "scipy", "pandas", "pyarrow", "dvc")


def versions() -> dict[str, str]:
    """{"python": "3.11.x", "torch": "2.13.0+cpu", …}; a package not installed reads "absent"."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found
