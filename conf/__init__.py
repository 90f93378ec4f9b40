"""llem's packaged Hydra configs (``pkg://llem.conf``). Hydra imports this package before it
composes, so storing the registries' options here (:mod:`llem.hydra_options`) makes ``backend=``,
``energy=`` and ``load=`` known in every process that composes it."""

from llem import hydra_options

hydra_options.store()
