"""imgsweep: deletes delisted products' images from JD product image search collections."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imgsweep")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
