"""Datasets in the shared on-disk layout, their presets and splits, and batching."""

from voxmesh.data.batching import Batch, collate_sequences
from voxmesh.data.check import CheckReport, check_dataset
from voxmesh.data.importers import ImportReport, import_vocaset
from voxmesh.data.layout import FaceDataset, Phoneme, Sequence, SequenceRecord, load_vertices, open_dataset
from voxmesh.data.presets import PRESETS, SPLITS, Preset, canonical_split, get_preset

__all__ = [
    "Batch", "CheckReport", "FaceDataset", "ImportReport", "PRESETS", "Phoneme", "Preset", "SPLITS", "Sequence",
    "SequenceRecord", "canonical_split", "check_dataset", "collate_sequences", "get_preset", "import_vocaset",
    "load_vertices", "open_dataset",
]
