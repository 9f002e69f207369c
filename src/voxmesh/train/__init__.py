"""One trainer for every method (Hugging Face Accelerate), its configuration, checkpoints
and loss plots.

    from voxmesh.train import load_config, train, load_checkpoint
    summary = train(load_config("configs/faceformer_synthetic.yaml"), "data/synth", "runs/ff")
    model = load_checkpoint("runs/ff/model")
"""

from voxmesh.train.checkpoint import (
    build_model,
    load_checkpoint,
    load_checkpoint_template,
    load_trainer_state,
    read_checkpoint_info,
    save_checkpoint,
)
from voxmesh.train.config import TrainConfig, config_from_dict, load_config
from voxmesh.train.trainer import train

__all__ = [
    "TrainConfig", "build_model", "config_from_dict", "load_checkpoint", "load_checkpoint_template", "load_config",
    "load_trainer_state", "read_checkpoint_info", "save_checkpoint", "train",
]
