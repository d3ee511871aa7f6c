"""The package version: the one source (pyproject.toml reads it, `fal_realtime.__version__` is it)."""

__version__ = "0.1.0"
