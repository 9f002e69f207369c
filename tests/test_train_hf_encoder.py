"""Both baselines train end to end with a real Hugging Face speech encoder (a tiny random
wav2vec 2.0 saved to a folder and loaded from it offline), fine-tuned with the model;
the checkpoint reloads and generates the same output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_trainer import CODETALKER_MODEL, FACEFORMER_MODEL, fixed_batch_loss, untrained, write_run_dataset

from voxmesh.data.layout import FaceDataset
from voxmesh.inference import generate_sequence
from voxmesh.train.checkpoint import load_checkpoint
from voxmesh.train.config import config_from_dict
from voxmesh.train.trainer import train


@pytest.fixture(scope="module")
def wav2vec_folder(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(16, 16, 16, 16, 16, 16, 16), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True)
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_run_dataset(tmp_path_factory.mktemp("data"))


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("method", ["faceformer", "codetalker"])
def test_baseline_trains_with_a_hugging_face_encoder_from_a_folder(method, dataset, wav2vec_folder, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = config_from_dict({
        "method": method, "encoder": {"kind": "hf", "model": str(wav2vec_folder), "freeze": False},
        "model": FACEFORMER_MODEL if method == "faceformer" else CODETALKER_MODEL,
        "data": {"window_seconds": 0.4, "batch_size": 2},
        "train": {"epochs": 6, "lr": 1.0e-3, "log_every": 1, "val_every": 100, "schedule": "constant",
                  "val_max_sequences": 1},
    })
    run = tmp_path / "run"
    train(config, dataset, run, progress=False)
    stage = "main" if method == "faceformer" else "predictor"
    model = load_checkpoint(run / "model")
    assert model.audio_encoder.trainable
    assert fixed_batch_loss(model, dataset, stage) < fixed_batch_loss(untrained(config, dataset), dataset, stage)
    # the fine-tuned encoder is part of the checkpoint: a reload generates the same output
    data = FaceDataset(dataset)
    sequence = data.split("test")[0]
    again = load_checkpoint(run / "model")
    first = generate_sequence(model, sequence, speaker=0, seed=0)
    second = generate_sequence(again, sequence, speaker=0, seed=0)
    assert first.shape == sequence.vertices.shape
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
