"""Models: wav2vec 1.0 (:mod:`w2vtk.models.wav2vec`), fairseq interop (:mod:`w2vtk.models.fairseq`),
layer-spec parsing (:mod:`w2vtk.models.layer_spec`) and acoustic models (:mod:`w2vtk.models.am`).

Submodules are imported explicitly (``from w2vtk.models.wav2vec import Wav2VecModel``) so that
importing this package stays cheap (no torch).
"""
