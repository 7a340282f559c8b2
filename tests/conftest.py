"""Shared fixtures: seeded symmetric test matrices with known spectra."""

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import settings

import curvwidgets as cw

matplotlib.use("Agg")
settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def wigner_2000() -> np.ndarray:
    """A 2000 x 2000 normalised Wigner matrix (spectrum close to [-2, 2])."""
    return cw.synthetic.wigner(2000, seed=3)


@pytest.fixture(scope="session")
def separated() -> tuple:
    """A 400 x 400 matrix whose top eigenvalue 3 is well separated from the rest in [0, 1]."""
    eigenvalues = np.concatenate([[3.0], np.linspace(0.0, 1.0, 399)])
    return cw.synthetic.with_spectrum(eigenvalues, seed=5), eigenvalues


@pytest.fixture
def one_thread():
    """One torch thread for the test: tensors this small cost less than the synchronisation of several threads
    (on a shared CPU, far less)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
