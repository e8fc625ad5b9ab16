"""Acoustic models on frame features: training (``w2vtk train-am``) and emissions for decoding.

- :func:`w2vtk.am.train.train_am` / :class:`w2vtk.am.config.TrainAMConfig`: CTC training;
- :func:`w2vtk.am.emissions.load_am`, :func:`w2vtk.am.emissions.compute_emissions`: inference;
- :mod:`w2vtk.am.data`: feature data dirs, normalisation, provenance, length-bucketed batches.
"""

from w2vtk.am.config import TrainAMConfig  # noqa: F401
from w2vtk.am.emissions import LoadedAM, compute_emissions, load_am  # noqa: F401
