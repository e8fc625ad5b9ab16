"""bin/install_system.sh's decisions (called by bin/install.sh): root installs with apt-get, a user
with password-less sudo through `sudo -n` (printed), anyone else gets the one command to run;
--no-system installs nothing and says what that costs. apt-get, dpkg-query, sudo and id are fakes on
PATH that record their calls; CI itself runs the real path as root."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "install_system.sh"


def _fake_bin(tmp_path: Path, uid: int, sudo_ok: bool) -> Path:
    b = tmp_path / "fakebin"
    b.mkdir()
    calls = tmp_path / "calls"
    scripts = {
        "id": f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} || echo "uid={uid}"\n',
        "dpkg-query": '#!/bin/sh\nfor m in $MISSING; do [ "$3" = "$m" ] && { printf "unknown ok not-installed"; '
                      'exit 0; }; done\nprintf "install ok installed"\n',
        "apt-get": f'#!/bin/sh\necho "apt-get $*" >> {calls}\n',
        "sudo": (f'#!/bin/sh\n[ "$1" = -n ] && shift\n[ "$1" = true ] && exit {0 if sudo_ok else 1}\n'
                 f'echo "sudo $*" >> {calls}\nexec "$@"\n'),
    }
    for name, text in scripts.items():
        (b / name).write_text(text)
        (b / name).chmod(0o755)
    return b


def _run(tmp_path, uid, sudo_ok, missing, *args):
    b = _fake_bin(tmp_path, uid, sudo_ok)
    env = dict(os.environ, PATH=f"{b}:/usr/bin:/bin", MISSING=missing, PYTHON="true")
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env)
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return proc, calls


def test_root_installs_what_is_missing_with_apt_get(tmp_path):
    proc, calls = _run(tmp_path, 0, False, "ffmpeg libboost-test-dev")
    assert proc.returncode == 0, proc.stderr
    assert calls[0] == "apt-get update -q"
    assert calls[1] == "apt-get install -y -q ffmpeg libboost-test-dev"


def test_user_with_passwordless_sudo_goes_through_sudo_and_says_so(tmp_path):
    proc, calls = _run(tmp_path, 1000, True, "ffmpeg")
    assert proc.returncode == 0, proc.stderr
    assert "running: sudo apt-get install -y ffmpeg" in proc.stderr
    assert "sudo apt-get update -q" in calls
    assert any(c.startswith("sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg") for c in calls)
    assert "apt-get install -y -q ffmpeg" in calls  # executed through sudo


def test_user_without_sudo_gets_the_one_command_and_exit_1(tmp_path):
    proc, calls = _run(tmp_path, 1000, False, "ffmpeg cmake")
    assert proc.returncode == 1
    assert "  sudo apt-get install -y ffmpeg cmake" in proc.stderr.splitlines()
    assert "--no-system" in proc.stderr and calls == []


@pytest.mark.parametrize("uid", [0, 1000])
def test_no_system_installs_nothing_and_says_what_it_costs(tmp_path, uid):
    proc, calls = _run(tmp_path, uid, True, "ffmpeg", "--no-system")
    assert proc.returncode == 0 and calls == []
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--no-system: not installing ffmpeg" in lines[0] and "desphere" in lines[0]


def test_nothing_missing_does_nothing(tmp_path):
    proc, calls = _run(tmp_path, 1000, False, "")
    assert proc.returncode == 0 and calls == [] and proc.stderr == ""
