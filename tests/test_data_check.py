import numpy as np
from miniature import write_dataset
from typer.testing import CliRunner

from voxmesh.cli import app
from voxmesh.data import check_dataset

runner = CliRunner()


def make(tmp_path):
    return write_dataset(tmp_path, {"a": ["01", "02"], "b": ["01", "02"]}, seconds=1.0)


def test_clean_dataset_reports_counts_and_exits_zero(tmp_path):
    root = make(tmp_path)
    report = check_dataset(root)
    assert report.ok and report.sequences == 4 and report.subjects == 2
    assert abs(report.total_seconds - 4.0) < 1e-6 and report.num_vertices == 42
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 0, result.output
    assert "sequences 4 from 2 subjects" in result.output and "problems  0" in result.output


def problems_after(tmp_path, damage):
    root = make(tmp_path)
    damage(root)
    report = check_dataset(root)
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1
    assert len(report.problems) == result.output.count("problem: ")
    return report.problems


def test_wav_without_vertices(tmp_path):
    problems = problems_after(tmp_path, lambda r: (r / "vertices_npy" / "a_01.npy").unlink())
    assert problems == ["wav/a_01.wav: no vertices vertices_npy/a_01.npy for this audio."]


def test_vertices_without_wav(tmp_path):
    problems = problems_after(tmp_path, lambda r: (r / "wav" / "b_02.wav").unlink())
    assert problems == ["vertices_npy/b_02.npy: no audio wav/b_02.wav for these vertices."]


def test_frame_count_disagreeing_with_audio(tmp_path):
    def damage(root):
        seq = np.load(root / "vertices_npy" / "a_02.npy")
        np.save(root / "vertices_npy" / "a_02.npy", seq[:27])  # 1 s of audio is 30 frames
    problems = problems_after(tmp_path, damage)
    assert len(problems) == 1 and problems[0].startswith("vertices_npy/a_02.npy: 27 frames")


def test_one_frame_of_slack_is_accepted(tmp_path):
    root = make(tmp_path)
    seq = np.load(root / "vertices_npy" / "a_02.npy")
    np.save(root / "vertices_npy" / "a_02.npy", seq[:29])
    assert check_dataset(root).ok


def test_nan_and_infinite_vertices(tmp_path):
    def damage(root):
        for name, bad in (("a_01", np.nan), ("b_01", np.inf)):
            seq = np.load(root / "vertices_npy" / f"{name}.npy")
            seq[3, 5] = bad
            np.save(root / "vertices_npy" / f"{name}.npy", seq)
    problems = problems_after(tmp_path, damage)
    assert problems == ["vertices_npy/a_01.npy: NaN or infinite vertex values.",
                        "vertices_npy/b_01.npy: NaN or infinite vertex values."]


def test_vertex_count_differs_from_template(tmp_path):
    def damage(root):
        np.save(root / "vertices_npy" / "b_01.npy", np.zeros((30, 40 * 3), np.float32))
    problems = problems_after(tmp_path, damage)
    assert problems == ["vertices_npy/b_01.npy: 40 vertices per frame but the template of 'b' has 42."]


def test_unreadable_files(tmp_path):
    def damage(root):
        (root / "wav" / "a_01.wav").write_bytes(b"RIFF....WAVEjunk")
        (root / "vertices_npy" / "b_02.npy").write_bytes(b"not numpy")
    problems = problems_after(tmp_path, damage)
    assert problems == ["wav/a_01.wav: unreadable audio (LibsndfileError).",
                        "vertices_npy/b_02.npy: unreadable vertices (ValueError)."]


def test_subject_without_template(tmp_path):
    def damage(root):
        (root / "wav" / "a_01.wav").rename(root / "wav" / "c_01.wav")
        (root / "vertices_npy" / "a_01.npy").rename(root / "vertices_npy" / "c_01.npy")
    problems = problems_after(tmp_path, damage)
    assert problems == ["vertices_npy/c_01.npy: subject 'c' has no template in templates.pkl."]


def test_missing_templates_is_one_line(tmp_path):
    problems = problems_after(tmp_path, lambda r: (r / "templates.pkl").unlink())
    assert len(problems) == 1 and "templates.pkl does not exist" in problems[0]


def test_vocaset_rate_is_used_for_the_check(tmp_path):
    root = write_dataset(tmp_path, {"FaceTalk_170725_00137_TA": ["sentence01"]}, disk_fps=60.0, seconds=1.0)
    assert check_dataset(root, preset="vocaset").ok
    assert not check_dataset(root, preset="generic", fps=30).ok
