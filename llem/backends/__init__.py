"""Inference backends, one folder each (``<name>/config.py`` keys, ``<name>/backend.py`` engine),
all named in :mod:`llem.backends.registry`. An engine is imported only by the job that uses it."""

from llem.backends.registry import load_backend, require_backend

__all__ = ["load_backend", "require_backend"]
