"""Tests run offline, on CPU, with a private cache folder."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["VOXMESH_CACHE"] = str(tmp_path_factory.mktemp("voxmesh_cache"))
    yield
