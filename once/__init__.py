"""ONCE: content-based recommendation boosted by large language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("once")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
