"""w2vtk: Kaldi-style recipes for wav2vec 1.0 (Schneider et al., 2019)."""

__version__ = "0.1.0"

from w2vtk.errors import W2vtkError  # noqa: E402,F401
