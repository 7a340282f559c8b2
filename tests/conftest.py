"""Shared fixtures: seeded symmetric test matrices with known spectra."""

import os

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


# -- running under pytest-xdist (make test: -n 2 --dist loadgroup --no-loadscope-reorder) ---------------------------

#: The modules that drive a real browser against a server of their own: they run one after the other on one worker
#: (two browsers and servers at once would crowd two cores) and start first, being the longest chain of work.
BROWSER_MODULES = ("tests/test_browser.py", "tests/test_voila.py")


def pytest_collection_modifyitems(config, items):
    """Under xdist's ``loadgroup``, group the tests by module and put the browser modules in one group, first.

    A module is one unit of work, so its module-scoped fixtures (a trained network, a server) are built once, on
    one worker; ``--no-loadscope-reorder`` keeps the order set here.
    """
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    for item in items:
        module = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group("browser" if module in BROWSER_MODULES else module))
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in BROWSER_MODULES)  # stable: the rest keep order


def pytest_configure(config):
    """Under xdist, share the cores among the workers: each worker's torch gets its share of the threads."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))
