"""Bad input to the linear-algebra layer, the random-matrix ensembles and the spectrum plots.

Each case is a call, the exception it must raise, and a pattern its message
must match: the argument's name and what is accepted. Nothing is computed
before the check (see the tests after the table).
"""

import threading

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

import curvwidgets as cw
from curvwidgets import linalg, plots, synthetic
from curvwidgets.linalg import bounds

EYE = np.eye(4)
STEM = (np.array([0.0, 1.0]), np.array([0.5, 0.5]))
NON_SYMMETRIC = np.triu(np.ones((4, 4)))
NAN = float("nan")


class NoDevice:
    """Has ``dim``, ``dtype`` and ``matvec`` but not ``device``."""

    dim, dtype = 3, torch.float64

    def matvec(self, vector):
        return vector


class FractionalDim(NoDevice):
    dim, device = 2.5, "cpu"


class NoneDevice(NoDevice):
    device = None


CASES = [
    # lanczos
    pytest.param(lambda: cw.lanczos(EYE, steps=0), ValueError, r"steps must be an int >= 1; got 0", id="lanczos-steps-0"),
    pytest.param(lambda: cw.lanczos(EYE, steps=True), ValueError, r"steps must be an int >= 1; got True", id="lanczos-steps-bool"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, seed="abc"), ValueError, r"seed must be an int in \[0, 2\*\*63\); got 'abc'", id="lanczos-seed-str"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, seed=True), ValueError, r"seed must be an int in \[0, 2\*\*63\); got True", id="lanczos-seed-bool"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*63\)", id="lanczos-seed-negative"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, num_vectors=True), ValueError, r"num_vectors must be an int >= 1; got True", id="lanczos-num-vectors-bool"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, progress="yes"), TypeError, r"progress must be None or a callable", id="lanczos-progress-str"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, cancel=True), TypeError, r"cancel must be None or an object with an is_set\(\) method", id="lanczos-cancel-bool"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, distribution="uniform"), ValueError, r"distribution must be one of \('gaussian', 'rademacher'\)", id="lanczos-distribution"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, start=np.ones(5)), ValueError, r"start must have shape \(4,\) or \(num_vectors, 4\); got \(5,\)", id="lanczos-start-shape"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, start=np.ones((2, 2, 4))), ValueError, r"start must have shape \(4,\) or \(num_vectors, 4\); got \(2, 2, 4\)", id="lanczos-start-3d"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, start=[1.0, NAN, 0.0, 0.0]), ValueError, r"start must hold finite, nonzero vectors", id="lanczos-start-nan"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, start="abc"), TypeError, r"start must be a real array or tensor", id="lanczos-start-str"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, start=np.ones(4) * 1j), TypeError, r"start must be a real array or tensor; got dtype torch.complex128", id="lanczos-start-complex"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, start=torch.ones(4, device="meta")), TypeError, r"start must be a real array or tensor holding numbers; got a tensor on the meta device", id="lanczos-start-meta"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, breakdown_tol=NAN), ValueError, r"breakdown_tol must be a finite number >= 0; got nan", id="lanczos-breakdown-nan"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, store_vectors="yes"), ValueError, r"store_vectors must be True or False", id="lanczos-store-vectors"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, basis_device="gpu"), ValueError, r"basis_device must name a device such as 'cpu'", id="lanczos-basis-device"),
    pytest.param(lambda: cw.lanczos(EYE, steps=3, check_symmetric="no"), ValueError, r"check_symmetric must be True or False", id="lanczos-check-symmetric"),
    pytest.param(lambda: cw.lanczos(NON_SYMMETRIC, steps=3), ValueError, r"operator must be symmetric; .*check_symmetric=False", id="lanczos-dense-non-symmetric"),
    pytest.param(lambda: cw.lanczos(scipy.sparse.csr_matrix(NON_SYMMETRIC), steps=3), ValueError, r"operator must be symmetric", id="lanczos-sparse-non-symmetric"),
    pytest.param(lambda: cw.lanczos(lambda v: torch.from_numpy(NON_SYMMETRIC) @ v, steps=3), ValueError, r"dim must be given \(an int >= 1\) when operator is a callable", id="lanczos-callable-without-dim"),
    # power iteration
    pytest.param(lambda: cw.power_iteration(EYE, steps=0), ValueError, r"steps must be an int >= 1", id="power-steps-0"),
    pytest.param(lambda: cw.power_iteration(EYE, steps=3, seed=1.5), ValueError, r"seed must be an int in \[0, 2\*\*63\); got 1.5", id="power-seed-float"),
    pytest.param(lambda: cw.power_iteration(EYE, steps=3, progress=1), TypeError, r"progress must be None or a callable", id="power-progress-int"),
    pytest.param(lambda: cw.power_iteration(EYE, steps=3, cancel=object()), TypeError, r"cancel must be None or an object with an is_set\(\) method", id="power-cancel-object"),
    pytest.param(lambda: cw.power_iteration(scipy.sparse.linalg.aslinearoperator(NON_SYMMETRIC), steps=3), ValueError, r"operator must be symmetric", id="power-scipy-non-symmetric"),
    # as_operator
    pytest.param(lambda: cw.as_operator(lambda v: v, dim=2.7), ValueError, r"dim must be an int >= 1; got 2.7", id="operator-dim-float"),
    pytest.param(lambda: cw.as_operator(lambda v: v, dim="10"), ValueError, r"dim must be an int >= 1; got '10'", id="operator-dim-str"),
    pytest.param(lambda: cw.as_operator(lambda v: v, dim=True), ValueError, r"dim must be an int >= 1; got True", id="operator-dim-bool"),
    pytest.param(lambda: cw.as_operator(EYE, dim=5), ValueError, r"dim must be the operator's size 4; got 5", id="operator-dim-mismatch"),
    pytest.param(lambda: cw.as_operator(lambda v: v, dim=3, device="gpu"), ValueError, r"device must name a device such as 'cpu', 'cuda' or 'cuda:1'; got 'gpu'", id="operator-device-str"),
    pytest.param(lambda: cw.as_operator(lambda v: v, dim=3, device=0.5), ValueError, r"device must name a device such as 'cpu', 'cuda' or 'cuda:1'; got 0.5", id="operator-device-float"),
    pytest.param(lambda: cw.as_operator(lambda v: v, dim=3, dtype="int8"), TypeError, r"dtype must be float32 or float64", id="operator-dtype"),
    pytest.param(lambda: cw.as_operator(scipy.sparse.eye(3, dtype=np.int64).tocsr()), TypeError, r"operator dtype must be float32 or float64", id="operator-sparse-int"),
    pytest.param(lambda: cw.as_operator(NoDevice()), TypeError, r"operator has matvec but lacks device; an operator needs dim, dtype, device, matvec", id="operator-protocol-missing"),
    pytest.param(lambda: cw.as_operator(FractionalDim()), ValueError, r"operator.dim must be an int >= 1; got 2.5", id="operator-protocol-dim"),
    pytest.param(lambda: cw.as_operator(NoneDevice()), ValueError, r"operator.device must name a device such as 'cpu' or 'cuda:0'; got None", id="operator-protocol-device-none"),
    pytest.param(lambda: cw.as_operator("matrix"), TypeError, r"operator must be a numpy array, .*an object with dim, dtype, device and matvec", id="operator-str"),
    pytest.param(lambda: cw.as_operator(np.ones((3, 4))), ValueError, r"operator must be a square 2-D matrix; got shape \(3, 4\)", id="operator-not-square"),
    pytest.param(lambda: cw.as_operator(lambda v: torch.cat([v, v]), dim=3), ValueError, r"symmetry probe step 1: the operator product must have shape \(3,\); got \(6,\)", id="operator-probe-shape"),
    pytest.param(lambda: cw.lanczos(np.zeros((0, 0)), steps=2), ValueError, r"operator must be at least 1 x 1; got shape \(0, 0\)", id="operator-empty"),
    pytest.param(lambda: cw.as_operator(scipy.sparse.csr_matrix((0, 0))), ValueError, r"operator must be at least 1 x 1", id="operator-sparse-empty"),
    pytest.param(lambda: cw.lanczos(cw.as_operator(lambda v: v * 1j, dim=3, check_symmetric=False), steps=2), TypeError, r"the operator's products must be real .*; got dtype torch.complex128", id="operator-complex-product"),
    # solvers
    pytest.param(lambda: linalg.conjugate_gradient(EYE, np.ones(4), damping=NAN), ValueError, r"damping must be a finite number; got nan", id="cg-damping-nan"),
    pytest.param(lambda: linalg.conjugate_gradient(EYE, np.ones(4), tol=0), ValueError, r"tol must be a finite number > 0; got 0", id="cg-tol-0"),
    pytest.param(lambda: linalg.conjugate_gradient(EYE, np.ones(4), maxiter=True), ValueError, r"maxiter must be an int >= 1; got True", id="cg-maxiter-bool"),
    pytest.param(lambda: linalg.conjugate_gradient(EYE, np.ones(3)), ValueError, r"rhs must have shape \(4,\); got \(3,\)", id="cg-rhs-shape"),
    pytest.param(lambda: linalg.conjugate_gradient(EYE, [1.0, np.inf, 0.0, 0.0]), ValueError, r"rhs must be finite", id="cg-rhs-inf"),
    pytest.param(lambda: linalg.conjugate_gradient(EYE, np.ones(4), progress="yes"), TypeError, r"progress must be None or a callable", id="cg-progress"),
    pytest.param(lambda: linalg.lanczos_solve(EYE, np.ones(4), steps=0), ValueError, r"steps must be an int >= 1", id="lanczos-solve-steps"),
    pytest.param(lambda: linalg.lanczos_solve(EYE, np.ones(4), steps=2, damping=np.inf), ValueError, r"damping must be a finite number; got inf", id="lanczos-solve-damping"),
    pytest.param(lambda: linalg.conjugate_gradient(EYE, torch.ones(4, dtype=torch.complex128)), TypeError, r"rhs must be real; got dtype torch.complex128", id="cg-rhs-complex"),
    pytest.param(lambda: linalg.lanczos_solve(np.diag([1.0, 2.0]), np.ones(2), steps=2, damping=-1.0), ValueError, r"damping=-1.0 makes T \+ damping I singular: the Ritz value 1 of the operator is -damping", id="lanczos-solve-singular"),
    # densities
    pytest.param(lambda: cw.stem_density([1, 2, 3]), TypeError, r"result must be a LanczosResult or a pair \(nodes, weights\) of 1-D arrays; got list of length 3", id="stem-list-of-3"),
    pytest.param(lambda: cw.stem_density([1.0, 2.0]), ValueError, r"result nodes must be a non-empty 1-D array of finite numbers; got shape \(\)", id="stem-pair-of-scalars"),
    pytest.param(lambda: cw.stem_density(([0.0, 1.0], [1.0])), ValueError, r"result nodes and weights must have the same length; got 2 and 1", id="stem-lengths"),
    pytest.param(lambda: cw.stem_density(([0.0, NAN], [0.5, 0.5])), ValueError, r"result nodes must be a non-empty 1-D array of finite numbers", id="stem-nan-node"),
    pytest.param(lambda: cw.stem_density(([0.0, 1.0], [1.5, -0.5])), ValueError, r"result weights must be >= 0 with a positive sum", id="stem-negative-weight"),
    pytest.param(lambda: cw.stem_density(([1.0 + 1.0j], [1.0])), ValueError, r"result nodes must hold real numbers .*; got list of dtype complex128", id="stem-complex-node"),
    pytest.param(lambda: cw.smooth_density(STEM, sigma=np.inf), ValueError, r"sigma must be a finite number > 0; got inf", id="smooth-sigma-inf"),
    pytest.param(lambda: cw.smooth_density(STEM, num_points=0), ValueError, r"num_points must be an int >= 1; got 0", id="smooth-num-points"),
    pytest.param(lambda: cw.smooth_density(STEM, grid=[0.0, NAN]), ValueError, r"grid must be a non-empty 1-D array of finite numbers", id="smooth-grid-nan"),
    pytest.param(lambda: cw.spectral_moments(STEM, orders=-1), ValueError, r"orders must be an int >= 0; got -1", id="moments-negative"),
    pytest.param(lambda: cw.spectral_moments(STEM, orders=True), ValueError, r"orders must be an int >= 0; got True", id="moments-bool"),
    pytest.param(lambda: cw.spectral_moments(STEM, orders=[1, 2.5]), ValueError, r"orders\[1\] must be an int >= 0; got 2.5", id="moments-fractional-order"),
    pytest.param(lambda: cw.trace_estimate(STEM), TypeError, r"result must be a LanczosResult \(it carries the size P\); got tuple", id="trace-of-a-stem"),
    pytest.param(lambda: cw.wasserstein1(STEM, [0.0, NAN]), ValueError, r"eigenvalues must be a non-empty 1-D array of finite numbers", id="wasserstein-nan"),
    # plots
    pytest.param(lambda: plots.stem_plot([1, 2, 3]), TypeError, r"density must be a LanczosResult or a pair \(nodes, weights\) of 1-D arrays; got list of length 3", id="stem-plot-list"),
    pytest.param(lambda: plots.density_curve("abc"), TypeError, r"density must be a LanczosResult or a pair \(nodes, weights\)", id="density-curve-str"),
    pytest.param(lambda: plots.spectrum_comparison(np.ones(3), 3.0, np.ones(3)), TypeError, r"density must be a LanczosResult or a pair \(nodes, weights\) of 1-D arrays; got float", id="comparison-float"),
    # bounds
    pytest.param(lambda: bounds.chebyshev(-1, 0.5), ValueError, r"degree must be an int >= 0; got -1", id="chebyshev-degree"),
    pytest.param(lambda: bounds.chebyshev(2, NAN), ValueError, r"x must be a finite number; got nan", id="chebyshev-x-nan"),
    pytest.param(lambda: bounds.lanczos_bound_term(2.0, 1.0, 0.0, steps=0), ValueError, r"steps must be an int >= 1; got 0", id="lanczos-term-steps"),
    pytest.param(lambda: bounds.lanczos_bound_term(NAN, 1.0, 0.0, steps=3), ValueError, r"lambda_1 must be a finite number; got nan", id="lanczos-term-nan"),
    pytest.param(lambda: bounds.power_bound_term(2.0, 1.0, steps=2.5), ValueError, r"steps must be an int >= 1; got 2.5", id="power-term-steps"),
    pytest.param(lambda: bounds.lanczos_lower_bound([1.0], 0.5, 3), ValueError, r"eigenvalues must hold all eigenvalues of A \(at least 2\); got 1", id="lower-bound-one-eigenvalue"),
    pytest.param(lambda: bounds.power_lower_bound([3.0, 2.0, 1.0], NAN, 3), ValueError, r"cos_angle must be a finite number; got nan", id="lower-bound-cos-nan"),
    pytest.param(lambda: bounds.lanczos_lower_bound([3.0, 2.0, 1.0], 1.5, 3), ValueError, r"cos_angle must be in \(0, 1\]; got 1.5", id="lower-bound-cos-above-1"),
    pytest.param(lambda: cw.bounds_table(gaps=(1.0, 1.5)), ValueError, r"gaps must be ratios lambda_1 / lambda_2 > 1; got \[1.0, 1.5\]", id="table-gaps"),
    pytest.param(lambda: cw.bounds_table(steps=(5, 5.5)), ValueError, r"steps\[1\] must be an int >= 1; got 5.5", id="table-steps"),
    # random-matrix ensembles
    pytest.param(lambda: synthetic.wigner(5, seed="abc"), ValueError, r"seed must be an int in \[0, 2\*\*63\); got 'abc'", id="wigner-seed"),
    pytest.param(lambda: synthetic.wigner(5, normalize="yes"), ValueError, r"normalize must be True or False; got 'yes'", id="wigner-normalize"),
    pytest.param(lambda: synthetic.wigner(True), ValueError, r"P must be an int >= 1; got True", id="wigner-P-bool"),
    pytest.param(lambda: synthetic.marchenko_pastur(5, 5, sigma=NAN), ValueError, r"sigma must be a finite number > 0; got nan", id="mp-sigma-nan"),
    pytest.param(lambda: synthetic.marchenko_pastur(5, 5, seed=2**63), ValueError, r"seed must be an int in \[0, 2\*\*63\)", id="mp-seed-too-large"),
    pytest.param(lambda: synthetic.marchenko_pastur_pdf(1.0, q=np.inf), ValueError, r"q must be a finite number > 0; got inf", id="mp-pdf-q-inf"),
    pytest.param(lambda: synthetic.marchenko_pastur_pdf(1.0, q=0.5, sigma=0), ValueError, r"sigma must be a finite number > 0; got 0", id="mp-pdf-sigma"),
    pytest.param(lambda: synthetic.marchenko_pastur_atom(NAN), ValueError, r"q must be a finite number > 0; got nan", id="mp-atom-nan"),
    pytest.param(lambda: synthetic.semicircle_pdf(0.0, radius=0), ValueError, r"radius must be a finite number > 0; got 0", id="semicircle-radius"),
    pytest.param(lambda: synthetic.haar_orthogonal(3, seed=None), ValueError, r"seed must be an int in \[0, 2\*\*63\); got None", id="haar-seed-none"),
    pytest.param(lambda: synthetic.with_spectrum([1.0, NAN]), ValueError, r"eigenvalues must be a non-empty sequence of finite numbers", id="with-spectrum-nan"),
    pytest.param(lambda: synthetic.with_spectrum("abc"), ValueError, r"eigenvalues must hold real numbers .*; got str", id="with-spectrum-str"),
    pytest.param(lambda: synthetic.semicircle_pdf("0.5"), ValueError, r"x must hold real numbers .*; got str", id="semicircle-x-str"),
    pytest.param(lambda: synthetic.marchenko_pastur_pdf(np.ones(2) * 1j, q=0.5), ValueError, r"x must hold real numbers .*; got ndarray of dtype complex128", id="mp-pdf-x-complex"),
    pytest.param(lambda: synthetic.section53_eigenvalues(seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*63\); got -1", id="section53-seed"),
]


@pytest.mark.parametrize(("call", "error", "message"), CASES)
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


class Counting(cw.LinearOperator):
    """``diag(1, 2, 3, 4)``, counting its products; symmetric by construction."""

    dim, dtype, device, symmetric = 4, torch.float64, torch.device("cpu"), True

    def __init__(self):
        self.products = 0

    def matvec(self, vector):
        self.products += 1
        return torch.arange(1.0, 5.0, dtype=torch.float64) * vector


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda op: cw.lanczos(op, steps=3, progress="yes"), id="lanczos-progress"),
        pytest.param(lambda op: cw.lanczos(op, steps=3, cancel=threading.Event), id="lanczos-cancel-class"),
        pytest.param(lambda op: cw.lanczos(op, steps=3, seed="abc"), id="lanczos-seed"),
        pytest.param(lambda op: cw.lanczos(op, steps=3, basis_device="gpu"), id="lanczos-basis-device"),
        pytest.param(lambda op: cw.power_iteration(op, steps=3, cancel=True), id="power-cancel"),
        pytest.param(lambda op: linalg.conjugate_gradient(op, np.ones(4), progress="yes"), id="cg-progress"),
        pytest.param(lambda op: linalg.conjugate_gradient(op, np.ones(4), tol=-1.0), id="cg-tol"),
    ],
)
def test_bad_arguments_fail_before_the_first_product(call):
    op = Counting()
    with pytest.raises((TypeError, ValueError)):
        call(op)
    assert op.products == 0


def test_good_protocol_objects_are_accepted():
    progress_events = []
    result = cw.lanczos(Counting(), steps=2, progress=progress_events.append, cancel=threading.Event(), seed=np.int64(3))
    assert [event.step for event in progress_events] == [1, 2]
    assert result.num_steps[0] == 2


def test_truncate_takes_a_numpy_int():
    result = cw.lanczos(np.diag([1.0, 2.0, 3.0, 4.0]), steps=3)
    shorter, reference = result.truncate(np.int64(2)), result.truncate(2)
    assert shorter.steps == 2
    for name in ("alpha", "beta", "residual_norm", "num_steps"):
        np.testing.assert_array_equal(getattr(shorter, name), getattr(reference, name))
