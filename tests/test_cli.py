import subprocess
import sys

from typer.testing import CliRunner

from voxmesh import __version__
from voxmesh.cli import app

runner = CliRunner()


def test_help_lists_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "evaluate-predictions"):
        assert command in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"voxmesh {__version__}"


def test_console_script_runs_from_the_environment():
    # the installed entry point, as a user calls it
    out = subprocess.run([sys.executable, "-m", "voxmesh.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_user_error_is_one_line_without_trace(tmp_path):
    result = runner.invoke(app, ["evaluate-predictions", str(tmp_path / "nope"), str(tmp_path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Prediction folder") and "Traceback" not in result.output
