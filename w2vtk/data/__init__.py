"""Kaldi data directories (``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``, ``segments``, ...).

Read, write, validate, fix, subset and combine, following the contract in
``docs/corpora.md`` (see :mod:`w2vtk.data.kaldi_dir` for the file table)::

    from w2vtk.data import load_data_dir, write_data_dir
    dd = load_data_dir("data/train")            # raises W2vtkError on any contract problem
    for utt in dd.utt_ids:
        spec = dd.wav_scp[dd.recording(utt)[0]]
    write_data_dir("data/x", wav_scp=..., text=..., utt2spk=..., utt2dur={"u1": 2.5})
"""

from w2vtk.data.kaldi_dir import (DataDir, format_seconds, is_extra_name, load_data_dir, read_kv,
                                  spk2utt_from_utt2spk, validate_data_dir, write_data_dir, write_kv)
from w2vtk.data.ops import balanced_order, combine_data_dirs, fix_data_dir, subset_data_dir

__all__ = ["DataDir", "read_kv", "write_kv", "load_data_dir", "write_data_dir",
           "validate_data_dir", "fix_data_dir", "subset_data_dir", "combine_data_dirs",
           "balanced_order", "spk2utt_from_utt2spk", "format_seconds", "is_extra_name"]
