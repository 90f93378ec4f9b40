"""The base of every backend's typed config (``backend.*`` keys); each backend's own lives beside
it."""

from __future__ import annotations

from llem.strict import Strict


class BackendConfig(Strict):
    """``name`` picks the backend (a Hydra option of group ``backend``); subclasses add their
    keys."""

    name: str
