"""System tools the tests need (README "System packages"): present after `bash bin/install.sh`; a
missing one fails its test, unless the install was made with --no-system (then it is skipped, with
the reason)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def no_system() -> bool:
    """True when the install was made with ``bin/install.sh --no-system`` (its venv marker), or
    W2VTK_NO_SYSTEM=1."""
    return os.environ.get("W2VTK_NO_SYSTEM") == "1" or (Path(sys.prefix) / ".w2vtk-no-system").is_file()


def require_tool(available: bool, what: str) -> None:
    """Fail (or, after --no-system, skip) a test whose system tool ``what`` is not available."""
    if available:
        return
    if no_system():
        pytest.skip(f"installed with --no-system: {what} not installed")
    pytest.fail(f"{what} not installed: run bash bin/install.sh (it installs the system packages), or "
                f"install with --no-system to skip the tests that need it")
