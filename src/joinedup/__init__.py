"""joinedup: the open-source platform an Integrated Care System runs on."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("joinedup")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = ["__version__"]
