"""Feature normalisation of the acoustic-model data layer."""

import numpy as np


def test_normaliser_modes():
    from w2vtk.am.data import Normaliser

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 4)) * [1.0, 2.0, 3.0, 0.5] + [5.0, -1.0, 0.0, 2.0]).astype(np.float32)
    cmvn = Normaliser("utterance")(x)
    np.testing.assert_allclose(cmvn.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(cmvn.std(0), 1, atol=1e-4)
    cmn = Normaliser("utterance-mean")(x)  # Kaldi's apply-cmvn without --norm-vars: the scale is kept
    np.testing.assert_allclose(cmn.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(cmn.std(0), x.std(0), rtol=1e-5)
    assert Normaliser.from_state(Normaliser("utterance-mean").state()).mode == "utterance-mean"
    np.testing.assert_array_equal(Normaliser("none")(x), x)
