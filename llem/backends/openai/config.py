"""``backend=openai`` keys: which server, and how llem gets one."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, field_validator, model_validator

from llem.backends.openai.address import check_url
from llem.backends.vllm.config import VllmEngineKeys
from llem.errors import UsageError
from llem.strict import MAX_GAP_S, MAX_WAIT_S

MIN_POLL_S = 0.05  # /metrics polls at most 20 times a second


class OpenAIConfig(VllmEngineKeys):
    """An OpenAI-compatible server, streamed to under ``load=poisson|concurrency``: prompts go to
    ``/v1/completions`` as token ids (tokenised here, chat template applied, so input tokens are
    counted locally).

    ``launch=vllm``: llem starts ``vllm serve`` on the experiment's model, precision and seed with
    the vLLM engine keys below (same ``engine_args`` rules as ``backend=vllm``), on a free loopback
    port, and stops it with every child at the end. ``launch=command``: llem starts ``command``
    instead (any OpenAI-compatible server; ``{port}`` and ``{model}`` are filled in).
    ``launch=none``: the server at ``url`` is already running (a non-local one only with
    ``energy=none``: the meters measure this machine).
    """

    name: Literal["openai"] = "openai"
    launch: Literal["vllm", "command", "none"] = Field(
        "vllm", description="vllm = llem starts vLLM; command = llem starts `command`; none = `url`"
    )
    url: str | None = Field(
        None, description="base URL of a running server (launch=none), e.g. http://127.0.0.1:8000"
    )
    command: list[str] | None = Field(
        None, description="server command line (launch=command); {port} and {model} are filled in"
    )
    served_model_name: str = Field("llem", description="the model name requests carry")
    health_timeout_s: float = Field(
        600.0,
        gt=0,
        le=MAX_WAIT_S,
        description="wait this long for GET /health = 200 after the start (s)",
    )
    stop_timeout_s: float = Field(
        30.0,
        gt=0,
        le=MAX_GAP_S,
        description="SIGTERM, then SIGKILL to the server's group after this long (s)",
    )
    metrics_interval_s: float = Field(
        0.5,
        ge=MIN_POLL_S,
        le=MAX_GAP_S,
        description="Prometheus /metrics poll interval (s), into timeseries.parquet; faster polls "
        "would load the server being measured",
    )
    request_timeout_s: int = Field(
        600, ge=1, le=int(MAX_WAIT_S), description="one streamed request's limit (s)"
    )

    @field_validator("url")
    @classmethod
    def _url_form(cls, url: str | None) -> str | None:
        return None if url is None else check_url(url)

    @model_validator(mode="after")
    def _launch_needs(self) -> OpenAIConfig:
        if self.launch == "none" and not self.url:
            raise ValueError("backend.launch=none needs backend.url=http://<host>:<port>")
        if self.launch == "command" and not self.command:
            raise ValueError("backend.launch=command needs backend.command=[prog,arg,...]")
        return self


def require_vllm() -> None:
    """Raise :class:`UsageError` naming the extra when vLLM (``launch=vllm``) is not installed."""
    if importlib.util.find_spec("vllm") is None:
        raise UsageError(
            "backend=openai with backend.launch=vllm needs vLLM: pip install "
            "llenergymeasure[vllm] (or backend.launch=none backend.url=<running server>)"
        )
