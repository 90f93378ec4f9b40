"""Containers: the packaged compose file (:mod:`llem.docker.compose`) and whether a Docker engine
answers (:mod:`llem.docker.engine`)."""
