"""Features for the acoustic model: wav2vec z / c / context-N and the log-mel baseline.

- :mod:`w2vtk.features.logmel`: 80 log-mel bins (kaldi-native-fbank, options set explicitly).
- :mod:`w2vtk.features.wav2vec`: exact batched and exact long-audio wav2vec extraction.
- :mod:`w2vtk.features.extract`: the driver (sharded ark/scp, resume, batching by length).
- :mod:`w2vtk.features.run`: ``w2vtk extract`` as one function (input discovery, data-dir output).
"""
