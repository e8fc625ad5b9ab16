import subprocess
import sys

from typer.testing import CliRunner

from w2vtk import __version__
from w2vtk.cli import app

runner = CliRunner()


def test_version_and_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "prep" in result.output


def test_console_script_turns_user_errors_into_one_line():
    # Any command that meets a W2vtkError must print exactly one 'error:' line and exit 1.
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "prep", "validate", "/nonexistent/dir"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "/nonexistent/dir" in lines[0]
    assert "Traceback" not in proc.stderr


def test_flags_have_no_type_label_in_help():
    for cmd in (["train-am"], ["pretrain"], ["extract"], ["decode"], ["export-fairseq"]):
        result = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, cmd
        assert "<bool>" not in result.output, cmd
    result = runner.invoke(app, ["extract", "--help"], env={"COLUMNS": "120"})
    assert "<integer>" in result.output or "<int>" in result.output  # valued options keep theirs


def test_help_tidy_up_tolerates_a_typer_without_its_private_hook(monkeypatch):
    """Typer 0.27 (found on a GPU machine) has no TyperOption.display_type_rich; importing the CLI
    used to fail there with AttributeError before any command ran."""
    import typer.core

    import w2vtk.cli as cli

    bare = type("TyperOption", (), {})
    monkeypatch.setattr(typer.core, "TyperOption", bare)
    cli._hide_flag_types()  # must not raise
    assert not hasattr(bare, "display_type_rich")
