"""Tests run offline, on CPU, with a private cache folder."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["VOXMESH_CACHE"] = str(tmp_path_factory.mktemp("voxmesh_cache"))
    yield


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models train faster on one thread: OpenMP spin-waits otherwise make each small
    op take milliseconds when other processes share the two cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
