"""Inference speed of every method as a real-time factor (seconds of compute per second
of audio) on 10 s of audio, split into the speech encoder and the model, on this
machine's CPU (and GPU when present). Untrained weights: speed does not depend on them.
Sizes are the synthetic configs on the procedural head (5,544 vertices)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from timing import best_seconds

import numpy as np
import torch
import yaml

from voxmesh.audio import align_features
from voxmesh.mesh.head import build_head
from voxmesh.models.registry import model_class

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "baselines_rtf.json"
SECONDS = 10.0
FPS = 30.0




def measure(method: str, encoder: dict | str | None, device: str) -> dict:
    config = yaml.safe_load((ROOT / "configs" / f"{method}_synthetic.yaml").read_text())
    head = build_head()
    model = model_class(method)(
        config["model"], num_vertices=head.num_vertices, speakers=[f"spk{i:02d}" for i in range(10)], fps=FPS,
        encoder=encoder or config["encoder"], faces=head.faces, neutral=head.vertices,
    ).to(device).eval()
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.normal(0, 0.1, int(SECONDS * 16000)).astype(np.float32))[None].to(device)
    frames = int(round(SECONDS * FPS))
    template = torch.from_numpy(head.vertices)[None].to(device)
    speakers = torch.zeros(1, dtype=torch.long, device=device)

    def encode():
        with torch.no_grad():
            features, mask = model.audio_encoder(audio, None)
            return align_features(features, torch.tensor([frames]), feature_mask=mask, total_frames=frames)

    features = encode()
    encoder_seconds = best_seconds(encode, 3)
    model_seconds = best_seconds(lambda: model.generate(features, template, speakers, seed=0), 2)
    return {"method": method, "encoder": model.audio_encoder.name, "device": device,
            "audio_seconds": SECONDS, "encoder_rtf": encoder_seconds / SECONDS,
            "model_rtf": model_seconds / SECONDS, "total_rtf": (encoder_seconds + model_seconds) / SECONDS}


def main() -> None:
    torch.manual_seed(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for method in ("faceformer", "codetalker"):
            for encoder in (None, "whisper-tiny.en"):
                rows.append(measure(method, encoder, device))
                print(".", end="", flush=True, file=sys.stderr)
    print(file=sys.stderr)
    print(f"{'method':<11} {'encoder':<26} {'device':<6} {'encoder RTF':>11} {'model RTF':>10} {'total RTF':>10}")
    for r in rows:
        print(f"{r['method']:<11} {r['encoder']:<26} {r['device']:<6} {r['encoder_rtf']:>11.4f} "
              f"{r['model_rtf']:>10.4f} {r['total_rtf']:>10.4f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
