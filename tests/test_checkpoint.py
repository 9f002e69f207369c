"""Checkpoints: save, reload, generate the same output; every way loading can go wrong
is one clear sentence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from miniature import tiny_topology

from voxmesh.errors import VoxmeshError
from voxmesh.mesh import Template
from voxmesh.train.checkpoint import (
    build_model,
    export_checkpoint,
    load_checkpoint,
    load_checkpoint_template,
    load_trainer_state,
    read_checkpoint_info,
    save_checkpoint,
)

FACEFORMER = {"d_model": 16, "num_heads": 2, "num_layers": 1, "period": 15}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and re.search(r"\.\s+[A-Z]", message) is None


@pytest.fixture(scope="module")
def template() -> Template:
    vertices, faces = tiny_topology()
    return Template(vertices, faces, {"lips": np.arange(6)}, {"inner_lip_pairs": np.array([[0, 3], [1, 4]])})


def make_model(template: Template, encoder: dict | None = None, method: str = "faceformer"):
    torch.manual_seed(0)
    model = build_model(method, FACEFORMER, num_vertices=template.num_vertices, speakers=["a", "b"], fps=30.0,
                        encoder=encoder or {"kind": "mel", "dim": 16, "hidden": 16}, faces=template.faces,
                        neutral=template.vertices, emotions=["happy", "neutral"])
    with torch.no_grad():  # FaceFormer starts from the template: move its output layer so outputs differ
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return model.eval()


def outputs(model, template: Template) -> torch.Tensor:
    features = torch.randn(2, 9, model.audio_encoder.output_dim, generator=torch.Generator().manual_seed(1))
    neutral = torch.from_numpy(template.vertices)[None].repeat(2, 1, 1)
    return model.generate(features, neutral, torch.tensor([0, 1]), seed=0)


@pytest.fixture()
def saved(tmp_path, template):
    model = make_model(template)
    folder = save_checkpoint(model, tmp_path / "ckpt", template=template, stage="main", step=12,
                             trainer_state={"step": 12, "rng": [torch.get_rng_state()]})
    return model, folder


def test_save_reload_generates_the_same_output(saved, template):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors", "topology.safetensors",
                                                        "trainer_state.pt"]
    reloaded = load_checkpoint(folder, expected_topology_hash=template.topology_hash)
    assert not reloaded.training and type(reloaded) is type(model)
    assert torch.equal(outputs(model, template), outputs(reloaded, template))
    info = read_checkpoint_info(folder)
    assert info["format_version"] == 1 and info["method"] == "faceformer" and info["stage"] == "main"
    assert info["step"] == 12 and info["speakers"] == ["a", "b"] and info["emotions"] == ["happy", "neutral"]
    assert info["topology_hash"] == template.topology_hash and info["num_vertices"] == 42
    assert info["faces_shape"] == [80, 3] and info["fps"] == 30.0 and info["voxmesh_version"]
    assert info["encoder"]["name"] == "mel:80-16-16" and info["encoder"]["spec"]["kind"] == "mel"
    assert reloaded.checkpoint_info["created"] == info["created"]
    again = load_checkpoint_template(folder)
    assert np.array_equal(again.faces, template.faces) and np.array_equal(again.vertices, template.vertices)
    assert np.array_equal(again.regions["lips"], np.arange(6)) and again.vertex_pairs["inner_lip_pairs"].shape == (2, 2)
    assert load_trainer_state(folder)["step"] == 12
    # a Template works as the expected topology too
    load_checkpoint(folder, expected_topology_hash=template)


def test_export_halves_large_tensors_and_reloads_close(saved, template, tmp_path):
    from safetensors.torch import load_file

    model, folder = saved
    result = export_checkpoint(folder, tmp_path / "shipped", min_half_values=64)
    shipped = tmp_path / "shipped"
    assert sorted(p.name for p in shipped.iterdir()) == ["model.json", "model.safetensors", "topology.safetensors"]
    weights = load_file(str(shipped / "model.safetensors"))
    original = load_file(str(folder / "model.safetensors"))
    assert {k: v.dtype for k, v in weights.items() if v.numel() < 64} == {k: v.dtype for k, v in original.items()
                                                                        if v.numel() < 64}
    halved = [k for k, v in weights.items() if v.dtype == torch.float16]
    assert halved and sum(weights[k].numel() for k in halved) == result["float16_values"]
    assert result["weights_bytes"] < 0.75 * (folder / "model.safetensors").stat().st_size
    info = read_checkpoint_info(shipped)
    assert info["exported"]["float16_values"] == result["float16_values"] and info["weights_bytes"] == result["weights_bytes"]
    reloaded = load_checkpoint(shipped, expected_topology_hash=template)
    assert all(p.dtype == torch.float32 for p in reloaded.parameters())
    torch.testing.assert_close(outputs(reloaded, template), outputs(model, template), atol=2e-3, rtol=0)
    full = export_checkpoint(folder, tmp_path / "full", half=False)
    assert full["float16_values"] == 0
    assert torch.equal(outputs(load_checkpoint(tmp_path / "full"), template), outputs(model, template))


def test_frozen_encoder_weights_are_left_out_and_rebuilt(tmp_path, template):
    from safetensors.torch import load_file

    model = make_model(template, encoder={"kind": "mel", "dim": 16, "hidden": 16, "freeze": True})
    with torch.no_grad():  # undo the perturbation of the frozen encoder: it is rebuilt from its spec
        fresh = build_model("faceformer", FACEFORMER, num_vertices=42, speakers=["a", "b"], fps=30.0,
                            encoder={"kind": "mel", "dim": 16, "hidden": 16, "freeze": True})
        model.audio_encoder.load_state_dict(fresh.audio_encoder.state_dict())
    folder = save_checkpoint(model, tmp_path / "frozen", template=template)
    assert not any(k.startswith("audio_encoder.") for k in load_file(str(folder / "model.safetensors")))
    reloaded = load_checkpoint(folder)
    assert torch.equal(outputs(model, template), outputs(reloaded, template))


def test_saving_is_atomic(tmp_path, template, monkeypatch):
    import safetensors.torch

    model = make_model(template)
    folder = save_checkpoint(model, tmp_path / "ckpt", template=template, step=1)
    before = (folder / "model.safetensors").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError):
        save_checkpoint(model, folder, template=template, step=2)
    assert (folder / "model.safetensors").read_bytes() == before and read_checkpoint_info(folder)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folder left behind


def check_error(folder: Path, match: str, **kwargs) -> str:
    with pytest.raises(VoxmeshError) as info:
        load_checkpoint(folder, **kwargs)
    message = str(info.value)
    assert one_sentence(message), message
    assert str(folder) in message, message
    assert re.search(match, message), message
    return message


def edit_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    (folder / "model.json").write_text(json.dumps(meta))


def test_wrong_topology_is_refused(saved):
    _, folder = saved
    vertices, faces = tiny_topology(subdivisions=2)
    message = check_error(folder, r"42 vertices.*but the data has 162 vertices", expected_topology_hash=Template(vertices, faces))
    assert "retrain" in message
    check_error(folder, "topology hash 0123", expected_topology_hash="0123")


def test_truncated_weights_are_refused(saved):
    _, folder = saved
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    check_error(folder, r"model\.safetensors is truncated or corrupt")
    edit_meta(folder, weights_bytes=None)  # without the size check, safetensors' own parse still fails
    weights.write_bytes(weights.read_bytes()[:50])
    check_error(folder, r"model\.safetensors is truncated or corrupt")


def test_corrupt_json_and_missing_files_are_refused(saved, tmp_path):
    _, folder = saved
    (folder / "model.json").write_text('{"format_version": 1, "method": ')
    check_error(folder, r"model\.json is corrupt")
    check_error(tmp_path / "nowhere", "does not exist")
    (tmp_path / "empty").mkdir()
    check_error(tmp_path / "empty", "has no model.json")


def test_newer_format_is_refused(saved):
    _, folder = saved
    edit_meta(folder, format_version=2, voxmesh_version="9.0")
    check_error(folder, "format version 2.*upgrade voxmesh")


def test_missing_encoder_is_refused(saved, tmp_path):
    _, folder = saved
    meta = json.loads((folder / "model.json").read_text())
    missing = str(tmp_path / "no-such-wav2vec2")
    meta["encoder"] = {"spec": {"kind": "hf", "model": missing}, "name": missing, "trainable": False}
    (folder / "model.json").write_text(json.dumps(meta))
    check_error(folder, "needs the speech encoder .*no-such-wav2vec2.*cannot be loaded here")


def test_another_methods_config_is_refused(saved):
    _, folder = saved
    edit_meta(folder, method="codetalker")  # faceformer weights and config under codetalker's name
    check_error(folder, "do not fit the codetalker model|rejects")
    edit_meta(folder, method="faceformer", config={"d_model": 16, "vq_layers": 3})
    check_error(folder, "holds a config that the faceformer model rejects")
    edit_meta(folder, method="nosuchmethod")
    check_error(folder, "'nosuchmethod' model, which this voxmesh does not have")


def test_trainer_state_errors(tmp_path, saved):
    _, folder = saved
    (folder / "trainer_state.pt").write_bytes(b"garbage")
    with pytest.raises(VoxmeshError, match="truncated or corrupt.*without --resume"):
        load_trainer_state(folder)
    with pytest.raises(VoxmeshError, match="nothing to resume"):
        load_trainer_state(tmp_path)


# ---- checksums ----------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_last_byte(path: Path) -> None:
    """Change one value of the last tensor: same size, still parses."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_checksums_are_recorded_and_a_changed_file_is_refused(saved, template):
    _, folder = saved
    info = read_checkpoint_info(folder)
    assert info["sha256"] == {"model.safetensors": sha256_of(folder / "model.safetensors"),
                              "topology.safetensors": sha256_of(folder / "topology.safetensors")}
    weights, topology = folder / "model.safetensors", folder / "topology.safetensors"
    good_weights, good_topology = weights.read_bytes(), topology.read_bytes()

    flip_last_byte(weights)
    message = check_error(folder, r"model\.safetensors is corrupt or was changed after saving")
    assert str(weights) in message and "sha256" in message and "model.json" in message
    weights.write_bytes(good_weights)
    flip_last_byte(topology)
    check_error(folder, r"topology\.safetensors is corrupt or was changed after saving")
    with pytest.raises(VoxmeshError, match="topology.safetensors is corrupt"):
        load_checkpoint_template(folder)
    topology.write_bytes(good_topology)
    load_checkpoint(folder)

    edit_meta(folder, sha256="not a map")
    check_error(folder, r"model\.json is corrupt \('sha256'")


def test_checkpoints_without_checksums_still_load(saved, template):
    model, folder = saved
    meta = json.loads((folder / "model.json").read_text())
    del meta["sha256"]  # as written by voxmesh before checksums
    (folder / "model.json").write_text(json.dumps(meta))
    assert torch.equal(outputs(load_checkpoint(folder), template), outputs(model, template))
    assert "sha256" not in load_checkpoint(folder).checkpoint_info


def test_export_records_the_checksum_of_the_file_it_writes(saved, tmp_path):
    _, folder = saved
    export_checkpoint(folder, tmp_path / "shipped", min_half_values=64)
    shipped = tmp_path / "shipped"
    info = read_checkpoint_info(shipped)
    assert info["sha256"]["model.safetensors"] == sha256_of(shipped / "model.safetensors")
    assert info["sha256"]["model.safetensors"] != read_checkpoint_info(folder)["sha256"]["model.safetensors"]
    assert info["sha256"]["topology.safetensors"] == sha256_of(shipped / "topology.safetensors")
    load_checkpoint(shipped)
    flip_last_byte(folder / "model.safetensors")  # a damaged checkpoint is not shipped
    with pytest.raises(VoxmeshError, match=r"model\.safetensors is corrupt or was changed"):
        export_checkpoint(folder, tmp_path / "again")
    assert not (tmp_path / "again").exists()


# ---- crashes inside the atomic replacement ---------------------------------------------------

def test_a_crash_between_the_renames_is_undone(tmp_path, template, monkeypatch):
    import os

    from voxmesh.train.checkpoint import clean_checkpoint_leftovers

    model = make_model(template)
    folder = save_checkpoint(model, tmp_path / "last", template=template, step=1)
    real_rename = os.rename
    calls = {"n": 0}

    def killed_after_the_first(source, target):
        calls["n"] += 1
        if calls["n"] == 2:  # the previous folder is aside, the new one not yet in place
            raise KeyboardInterrupt
        return real_rename(source, target)

    monkeypatch.setattr(os, "rename", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, folder, template=template, step=2)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not folder.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".last.old-")]
    (tmp_path / ".last.abcd_123.tmp").mkdir()  # what a SIGKILL while writing leaves
    (tmp_path / ".last.abcd_123.tmp" / "model.safetensors").write_bytes(b"half")
    done = clean_checkpoint_leftovers(tmp_path)
    assert any(line.startswith("restored") for line in done)
    assert [p.name for p in tmp_path.iterdir()] == ["last"] and read_checkpoint_info(folder)["step"] == 1
    load_checkpoint(folder)
