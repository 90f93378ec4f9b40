"""Test settings: one CPU thread, no hub access, a private llem cache for the whole session, and
the solo lock: a test that measures CPU contention runs with no other test running."""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HYDRA_FULL_ERROR"] = "0"
# one private cache per test process (each pytest-xdist worker has its own), removed at exit
_CACHE = tempfile.mkdtemp(prefix="llem-test-cache-")
os.environ["LLEM_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _test_lock(tmp_path_factory: pytest.TempPathFactory):
    """A shared ``flock`` held by every test on a file all workers of this session see (the
    parent of a pytest-xdist worker's temp folder); a ``solo`` test takes it exclusively."""
    base = tmp_path_factory.getbasetemp()
    folder = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    fd = os.open(folder / "llem-solo.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)  # releases the lock


@pytest.fixture
def solo(_test_lock: int) -> None:
    """Run this test alone: wait until every other running test of the session has ended (the
    other pytest-xdist worker then waits). Other processes' CPU is what contention tests
    measure, and another test on the second core is one."""
    fcntl.flock(_test_lock, fcntl.LOCK_EX)  # converts the shared lock: no deadlock between two


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from llem.models.tiny import ensure_tiny_llama

    return ensure_tiny_llama()


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def gpt2_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A random GPT-2 saved locally: no chat template, no pad token, a 256-token context."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2-tiny")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = None
    tok.chat_template = None
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=64,
        n_layer=2,
        n_head=2,
        n_positions=256,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder
