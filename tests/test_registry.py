"""The registry of methods knows each method: its title, whether it is stochastic, the
configs it ships for each dataset and its quick-test sizes. The benchmark's tables come
from it, so a new method is one module plus its configs."""

from __future__ import annotations

import pytest

from voxmesh import benchmark
from voxmesh.errors import VoxmeshError
from voxmesh.models.registry import available_methods, compared_methods, method_info, model_class
from voxmesh.train.config import PACKAGED_CONFIGS, load_config


@pytest.mark.parametrize("name", compared_methods())
def test_each_method_declares_what_the_rest_needs(name):
    info = method_info(name)
    assert info.name == name and info.title and model_class(name) is info.model_class
    assert info.model_class.method == name  # what checkpoints record
    assert "synthetic" in info.configs
    for dataset, config in info.configs.items():
        assert (PACKAGED_CONFIGS / f"{config}.yaml").is_file(), config
        assert load_config(config).method in (name, *[a for a in available_methods() if method_info(a) is info])
    quick = load_config(info.configs["synthetic"], list(benchmark.QUICK_COMMON) + list(info.quick_overrides))
    assert quick.train.max_steps == 3


def test_the_benchmark_tables_come_from_the_registry():
    assert benchmark.METHODS == compared_methods() == ("faceformer", "codetalker", "gldi", "emoface")
    assert benchmark.TITLES["gldi"] == "GLDiTalker" and benchmark.STOCHASTIC == ("gldi",)
    assert all(benchmark.RUNS[name][0] == method_info(name).configs["synthetic"] for name in compared_methods())


def test_aliases_and_unknown_names():
    assert method_info("GLDiTalker").name == "gldi" and method_info("glditalker").name == "gldi"
    with pytest.raises(VoxmeshError, match="Unknown method 'nosuch'"):
        method_info("nosuch")
