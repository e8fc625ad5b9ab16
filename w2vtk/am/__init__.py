"""Acoustic models on frame features: training (``w2vtk train-am``).

- :func:`w2vtk.am.train.train_am` / :class:`w2vtk.am.config.TrainAMConfig`: CTC or ASG training
  (:mod:`w2vtk.am.criterion`, :mod:`w2vtk.am.asg`, :mod:`w2vtk.am.viterbi`);
- :mod:`w2vtk.am.data`: feature data dirs, normalisation, provenance, length-bucketed batches.

Inference (loading a trained AM, emissions) is :mod:`w2vtk.decoding.emissions`. Nothing is imported
here, so that ``w2vtk.am.data`` can be read without torch.
"""
