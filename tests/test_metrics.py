"""The verify metrics on hand-checked cases (numbers worked out by hand in the comments)."""
import numpy as np
import pytest

from experiments import metrics as M


def test_modes_error_normalises_every_mode_by_s_max():
    s = np.array([10.0, 2.0])
    meas = np.array([[0.0, 0.0], [5.0, 1.0], [10.0, 2.0]])
    pred = np.array([[0.0, 0.0], [6.0, 1.5], [10.0, 2.0]])
    # epoch 1: |6 − 5|/10 = 0.1, |1.5 − 1|/10 = 0.05 → max 0.1 (the weak mode is not divided by its own s = 2)
    assert M.modes_error(pred, meas, s) == pytest.approx(0.1)


def test_modes_error_zero_singular_value_uses_s_max():
    s = np.array([4.0, 0.0])
    pred = np.array([[1.0, 0.2]])
    meas = np.array([[1.0, 0.0]])
    assert M.modes_error(pred, meas, s) == pytest.approx(0.2 / 4.0)


def test_loss_error_relative_to_initial_measured_loss():
    meas = np.array([2.0, 1.0, 0.5])
    pred = np.array([2.0, 1.4, 0.5])
    assert M.loss_error(pred, meas) == pytest.approx(0.4 / 2.0)


def test_rsm_error_frobenius_relative_to_reference():
    ref = np.diag([3.0, 4.0])  # ‖ref‖_F = 5
    meas = np.zeros((2, 2, 2))
    pred = np.zeros((2, 2, 2))
    pred[1, 0, 1] = pred[1, 1, 0] = 1.0  # ‖diff‖_F = √2
    assert M.rsm_error(pred, meas, ref) == pytest.approx(np.sqrt(2) / 5)


def test_illusion_error_is_max_absolute():
    assert M.illusion_error([0.0, 0.5, -1.0], [0.1, 0.5, -0.7]) == pytest.approx(0.3)


def test_half_learning_epochs_first_crossing_and_never():
    s = np.array([2.0, 4.0, 0.0])
    curves = np.array([[0.0, 0.0, 0.0], [0.9, 1.0, 0.0], [1.0, 1.5, 0.0], [2.0, 1.9, 0.0]])
    h = M.half_learning_epochs(curves, s)
    assert h[0] == 2 and np.isinf(h[1]) and np.isnan(h[2])


@pytest.mark.parametrize("call", [
    lambda: M.modes_error(np.zeros((2, 2)), np.zeros((3, 2)), [1, 1]),
    lambda: M.modes_error(np.zeros((2, 2)), np.zeros((2, 2)), [1, 1, 1]),
    lambda: M.loss_error([1.0], [0.0]),
    lambda: M.rsm_error(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((2, 2))),
    lambda: M.half_learning_epochs(np.zeros((2, 2)), [1, 1], fraction=1.5),
])
def test_bad_input_is_refused(call):
    with pytest.raises(ValueError):
        call()
