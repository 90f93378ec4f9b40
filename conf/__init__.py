"""llem's packaged Hydra configs (``pkg://llem.conf``). Hydra imports this package before it
composes, so importing the registries here makes their generated group choices known in every
process: ``energy/<meter>`` (:mod:`llem.energy.registry`)."""

import llem.energy.registry  # noqa: F401
