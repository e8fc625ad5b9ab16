import os
import pickle

import pytest
import torch

from w2vtk.checkpoint import load_checkpoint, save_checkpoint
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open, atomic_write_text


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]  # no temporary left behind


def test_atomic_write_uses_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_write_refuses_missing_directory(tmp_path):
    with pytest.raises(W2vtkError, match="does not exist"):
        atomic_write_text(tmp_path / "nope" / "f.txt", "x")


def test_checkpoint_round_trip(tmp_path):
    obj = {"model": {"w": torch.arange(4.0)}, "config": {"lr": 0.1}, "step": 3}
    save_checkpoint(obj, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["model"]["w"], obj["model"]["w"]) and back["step"] == 3


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": evil}, path)
    with pytest.raises(W2vtkError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_and_garbage_checkpoints(tmp_path):
    save_checkpoint({"w": torch.zeros(1000)}, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(W2vtkError, match="t.pt"):
        load_checkpoint(tmp_path / "t.pt")
    (tmp_path / "g.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(W2vtkError, match="g.pt"):
        load_checkpoint(tmp_path / "g.pt")
    (tmp_path / "text.pt").write_text("model: 1\nthis is a yaml file, not a checkpoint\n")
    with pytest.raises(W2vtkError, match="text.pt"):
        load_checkpoint(tmp_path / "text.pt")
    for i, junk in enumerate([b"\x80\x02}q\x00", b"PK\x03\x04garbage", bytes(range(256)) * 4]):
        (tmp_path / f"j{i}.pt").write_bytes(junk)
        with pytest.raises(W2vtkError, match=f"j{i}.pt"):
            load_checkpoint(tmp_path / f"j{i}.pt")
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(W2vtkError, match="empty"):
        load_checkpoint(tmp_path / "e.pt")
    with pytest.raises(W2vtkError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_plain_pickle_protocol_is_also_refused(tmp_path):
    path = tmp_path / "p.pt"
    marker = tmp_path / "ran"
    evil = _Evil()
    evil.marker = marker
    path.write_bytes(pickle.dumps(evil))
    with pytest.raises(W2vtkError):
        load_checkpoint(path)
    assert not marker.exists()
