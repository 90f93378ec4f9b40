"""A trivial Hydra app for launcher tests: records its environment; can sleep, fail, kill itself."""

import json
import os
import signal
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from llem.plugins import register_plugins

register_plugins()


@hydra.main(
    version_base="1.3",
    config_path=str(Path(__file__).resolve().parent / "conf"),
    config_name="config",
)
def app(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / "job.json").write_text(
        json.dumps(
            {
                "x": cfg.x,
                "pid": os.getpid(),
                "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "start": time.time(),
                "token_in_env": "HF_TOKEN" in os.environ,
            }
        )
    )
    time.sleep(cfg.sleep_s)
    if cfg.action == "fail":
        raise RuntimeError(f"job {cfg.x} failed on purpose")
    if cfg.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    (out / "done.json").write_text(json.dumps({"end": time.time()}))


if __name__ == "__main__":
    app()
