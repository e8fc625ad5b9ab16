"""Running the w2vtk CLI in the test process."""

from __future__ import annotations

import pytest

from w2vtk.cli import main


def run_main(capsys, args: list[str]) -> tuple[int, str, str]:
    """``w2vtk ARGS`` through the CLI's entry point: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err
