import json

import numpy as np
from miniature import write_dataset
from typer.testing import CliRunner

from voxmesh.cli import app
from voxmesh.data import open_dataset
from voxmesh.eval.metrics import lip_vertex_error

runner = CliRunner()


def test_scores_a_folder_of_predictions_and_writes_json(tmp_path):
    data = write_dataset(tmp_path / "data", {"a": ["01", "02"], "b": ["01"]}, seconds=0.5)
    preds = tmp_path / "preds"
    preds.mkdir()
    dataset = open_dataset(data)
    expected_gt, expected_pred = [], []
    for k, seq in enumerate(dataset):
        offset = np.zeros_like(seq.vertices)
        offset[:, :, 0] = 0.001 * (k + 1)  # 1, 2, 3 mm along x
        pred = seq.vertices + offset
        pred = np.concatenate([pred, pred[-1:]])  # one frame too many: cut to the ground truth
        np.save(preds / f"{seq.name}.npy", pred.reshape(len(pred), -1))
        expected_gt.append(seq.vertices)
        expected_pred.append(pred)
    result = runner.invoke(app, ["evaluate-predictions", str(preds), str(data)])
    assert result.exit_code == 0, result.output
    assert "LVE" in result.output and "m^2" in result.output
    report = json.loads((preds / "metrics.json").read_text())
    assert report["sequences"] == 3 and report["frames"] == 45
    # every lip vertex is off by exactly the offset: LVE = mean of squared offsets over frames
    assert np.isclose(report["metrics"]["LVE"], (1e-6 + 4e-6 + 9e-6) / 3)
    assert np.isclose(report["metrics"]["LVE"], lip_vertex_error(expected_pred, expected_gt, np.arange(6)))
    assert np.isclose(report["metrics"]["MVE"], 0.002)
    assert report["units"]["LVE"] == "m^2" and report["units"]["MVE"] == "m"
    assert report["regions"]["lips"] == {"vertices": 6, "source": "regions.json"}
    assert set(report["per_sequence"]) == {"a_01", "a_02", "b_01"}


def test_region_override_and_unknown_prediction(tmp_path):
    data = write_dataset(tmp_path / "data", {"a": ["01"]}, seconds=0.5)
    preds = tmp_path / "preds"
    preds.mkdir()
    seq = open_dataset(data)[0]
    moved = seq.vertices.copy()
    moved[:, 30, 0] += 0.01  # only vertex 30 moves, 1 cm along x
    np.save(preds / "a_01.npy", moved)
    (tmp_path / "lips.txt").write_text("30\n31\n")
    result = runner.invoke(app, ["evaluate-predictions", str(preds), str(data), "--lips", str(tmp_path / "lips.txt"),
                                 "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out.json").read_text())
    assert np.isclose(report["metrics"]["LVE"], 1e-4)
    assert report["regions"]["lips"]["source"].endswith("lips.txt")
    np.save(preds / "zz_99.npy", moved)
    result = runner.invoke(app, ["evaluate-predictions", str(preds), str(data)])
    assert result.exit_code == 2 and "zz_99.npy matches no sequence" in result.output


def test_short_prediction_is_an_error(tmp_path):
    data = write_dataset(tmp_path / "data", {"a": ["01"]}, seconds=0.5)
    preds = tmp_path / "preds"
    preds.mkdir()
    np.save(preds / "a_01.npy", open_dataset(data)[0].vertices[:5])
    result = runner.invoke(app, ["evaluate-predictions", str(preds), str(data)])
    assert result.exit_code == 2 and "frames" in result.output and len(result.output.strip().splitlines()) == 1
