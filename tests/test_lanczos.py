"""Lanczos against exact references: quadrature identities, dense eigendecompositions, theorems."""

import importlib
import threading

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import curvwidgets as cw

# The module, not the function of the same name that curvwidgets.linalg re-exports.
LANCZOS_MODULE = importlib.import_module("curvwidgets.linalg.lanczos")


def quadratic_forms(matrix: np.ndarray, vector: np.ndarray, orders: int) -> np.ndarray:
    """``v^T A^k v / v^T v`` for k = 0 .. orders - 1."""
    forms, power = [], vector.copy()
    for _ in range(orders):
        forms.append(vector @ power / (vector @ vector))
        power = matrix @ power
    return np.array(forms)


def test_gauss_quadrature_matches_moments_for_every_start_vector():
    matrix = cw.synthetic.wigner(300, seed=1)
    norm = np.abs(np.linalg.eigvalsh(matrix)).max()
    starts = np.random.default_rng(2).standard_normal((3, 300))
    steps = 12
    result = cw.lanczos(matrix, steps=steps, start=starts)
    for run, start in enumerate(starts):
        exact = quadratic_forms(matrix, start, 2 * steps)
        quadrature = np.array([result.weights(run) @ result.nodes(run) ** k for k in range(2 * steps)])
        np.testing.assert_array_less(np.abs(quadrature - exact), 1e-10 * norm ** np.arange(2 * steps))


@pytest.mark.parametrize(("dtype", "tolerance"), [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("basis_device", [None, "cpu"])
def test_basis_stays_orthogonal(wigner_2000, dtype, tolerance, basis_device):
    result = cw.lanczos(wigner_2000.astype(dtype), steps=100, store_vectors=True, basis_device=basis_device)
    basis = result.basis[0].double()
    measured = torch.linalg.matrix_norm(basis @ basis.T - torch.eye(100, dtype=torch.float64), ord=2).item()
    assert measured < tolerance
    assert result.orthogonality == pytest.approx(measured, rel=1e-6, abs=1e-15)


def test_well_separated_top_eigenvalue_to_1e8_in_30_steps(separated):
    matrix, eigenvalues = separated
    result = cw.lanczos(matrix, steps=30, seed=0)
    assert abs(result.ritz_values[0, -1] - eigenvalues.max()) < 1e-8


def test_ritz_values_interlace_the_spectrum(wigner_2000):
    eigenvalues = np.linalg.eigvalsh(wigner_2000)
    ritz = cw.lanczos(wigner_2000, steps=30).nodes()
    # Cauchy interlacing: the k-th largest Ritz value lies between lambda_{P-m+k} and lambda_k.
    assert np.all(ritz[::-1] <= eigenvalues[::-1][:30] + 1e-12)
    assert np.all(ritz >= eigenvalues[:30] - 1e-12)


def test_theorem_4_shift_and_negate_gives_exactly_shifted_ritz_values():
    matrix = cw.synthetic.wigner(400, seed=7)
    shift = 1.7
    start = np.random.default_rng(0).standard_normal(400)
    original = cw.lanczos(matrix, steps=25, start=start)
    shifted = cw.lanczos(-matrix + shift * np.eye(400), steps=25, start=start)
    np.testing.assert_allclose(shifted.nodes(), np.sort(shift - original.nodes()), atol=1e-12)
    np.testing.assert_allclose(shifted.alpha, shift - original.alpha, atol=1e-12)
    np.testing.assert_allclose(np.abs(shifted.beta), np.abs(original.beta), atol=1e-12)


def test_theorem_5_ritz_values_are_not_the_top_eigenvalues():
    steps = 10
    eigenvalues = np.concatenate([np.linspace(2.0, 3.0, steps), np.linspace(0.0, 1.9, 490)])
    assert eigenvalues[:steps].sum() < eigenvalues[steps:].sum()
    matrix = cw.synthetic.with_spectrum(eigenvalues, seed=11)
    top = np.sort(np.linalg.eigvalsh(matrix))[-steps:]
    ritz = cw.lanczos(matrix, steps=steps, seed=4).nodes()
    assert np.max(np.abs(ritz - top)) > 0.5
    assert ritz.min() < 1.0  # Ritz values spread over the bulk, far below the top-m cluster [2, 3]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_and_torch_inputs_agree(dtype):
    matrix = cw.synthetic.wigner(200, seed=2).astype(dtype)
    from_numpy = cw.lanczos(matrix, steps=20, seed=9)
    from_torch = cw.lanczos(torch.from_numpy(matrix), steps=20, seed=9)
    np.testing.assert_array_equal(from_numpy.ritz_values, from_torch.ritz_values)
    reference = cw.lanczos(matrix.astype(np.float64), steps=20, seed=9)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(from_numpy.ritz_values, reference.ritz_values, atol=tolerance)


def test_results_are_reproducible_from_the_seed():
    matrix = cw.synthetic.wigner(150, seed=0)
    first, again = cw.lanczos(matrix, 15, num_vectors=2, seed=3), cw.lanczos(matrix, 15, num_vectors=2, seed=3)
    other = cw.lanczos(matrix, 15, num_vectors=2, seed=4)
    np.testing.assert_array_equal(first.alpha, again.alpha)
    assert not np.allclose(first.alpha, other.alpha)


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_several_start_vectors_equal_separate_runs(distribution):
    matrix = cw.synthetic.wigner(120, seed=8)
    together = cw.lanczos(matrix, steps=15, num_vectors=3, seed=1, distribution=distribution, store_vectors=True)
    starts = together.basis[:, 0]
    if distribution == "rademacher":
        assert torch.allclose(starts.abs(), torch.full_like(starts, 120**-0.5))
    for run in range(3):
        alone = cw.lanczos(matrix, steps=15, start=starts[run])
        np.testing.assert_allclose(together.nodes(run), alone.nodes(), atol=1e-12)


def test_ritz_vectors_are_eigenvector_estimates_with_the_stated_residuals(separated):
    matrix, _ = separated
    result = cw.lanczos(matrix, steps=20, num_vectors=2, store_vectors=True)
    vectors = result.ritz_vectors.numpy()
    for run in range(2):
        residuals = np.linalg.norm(vectors[run] @ matrix - result.ritz_values[run][:, None] * vectors[run], axis=1)
        np.testing.assert_allclose(residuals, result.residual_estimates[run], atol=1e-10)
        np.testing.assert_allclose(np.linalg.norm(vectors[run], axis=1), 1.0, atol=1e-12)


def test_truncate_equals_a_shorter_run():
    matrix = cw.synthetic.wigner(200, seed=6)
    full = cw.lanczos(matrix, steps=30, num_vectors=2, seed=2, store_vectors=True)
    short = cw.lanczos(matrix, steps=12, num_vectors=2, seed=2, store_vectors=True)
    cut = full.truncate(12)
    np.testing.assert_allclose(cut.ritz_values, short.ritz_values, atol=1e-12)
    np.testing.assert_allclose(cut.ritz_weights, short.ritz_weights, atol=1e-12)
    np.testing.assert_allclose(cut.residual_norm, short.residual_norm, atol=1e-12)
    np.testing.assert_allclose(cut.ritz_vectors.abs(), short.ritz_vectors.abs(), atol=1e-10)
    assert full.truncate(30).residual_norm.tolist() == full.residual_norm.tolist()
    with pytest.raises(ValueError, match="k must be"):
        full.truncate(31)


def test_early_stop_on_an_invariant_subspace_gives_an_exact_rule():
    # Five distinct eigenvalues: the Krylov space of any vector is invariant after 5 steps.
    eigenvalues = np.repeat([-2.0, -0.5, 0.0, 1.0, 4.0], 20)
    matrix = cw.synthetic.with_spectrum(eigenvalues, seed=1)
    result = cw.lanczos(matrix, steps=30, seed=0)
    assert result.num_steps.tolist() == [5] and result.steps == 5
    np.testing.assert_allclose(result.nodes(), [-2.0, -0.5, 0.0, 1.0, 4.0], atol=1e-10)
    np.testing.assert_allclose(result.weights().sum(), 1.0)
    assert result.residual_norm[0] < 1e-10


def test_early_stop_of_one_run_pads_it():
    eigenvalues = np.concatenate([np.repeat([1.0, 2.0, 3.0], 10), np.linspace(5, 6, 30)])
    matrix = cw.synthetic.with_spectrum(eigenvalues, seed=2)
    basis = cw.synthetic.haar_orthogonal(60, seed=3)
    eigenvectors = np.linalg.eigh(matrix)[1]
    inside = eigenvectors[:, :30] @ np.ones(30)  # lives in the span of the eigenvalues 1, 2, 3
    result = cw.lanczos(matrix, steps=8, start=np.stack([inside, basis[:, 0]]))
    assert result.num_steps.tolist() == [3, 8]
    np.testing.assert_allclose(result.nodes(0), [1.0, 2.0, 3.0], atol=1e-10)
    assert np.isnan(result.ritz_values[0, 3:]).all() and np.all(result.ritz_weights[0, 3:] == 0)
    assert np.isnan(result.beta[0, 2:]).all()
    assert np.all(result.gram_schmidt_passes[0, 3:] == 0) and np.all(result.gram_schmidt_passes[:, :3] >= 1)
    nodes, weights = cw.stem_density(result)
    assert nodes.size == 11 and weights.sum() == pytest.approx(1.0)


def test_steps_beyond_the_dimension_stop_at_the_dimension():
    matrix = cw.synthetic.wigner(12, seed=0)
    result = cw.lanczos(matrix, steps=50)
    assert result.steps == 12
    np.testing.assert_allclose(result.nodes(), np.linalg.eigvalsh(matrix), atol=1e-12)


def test_cancel_after_k_steps_carries_a_valid_k_step_result():
    matrix = cw.synthetic.wigner(300, seed=4)
    stop = threading.Event()
    events = []

    def listener(event):
        events.append(event)
        if event.step == 7:
            stop.set()

    with pytest.raises(cw.Cancelled) as caught:
        cw.lanczos(matrix, steps=40, seed=1, progress=listener, cancel=stop)
    partial = caught.value.result
    assert caught.value.step == 7 and partial.steps == 7
    reference = cw.lanczos(matrix, steps=7, seed=1)
    np.testing.assert_allclose(partial.ritz_values, reference.ritz_values, atol=1e-12)
    assert partial.orthogonality < 1e-13
    assert [event.step for event in events] == list(range(1, 8))
    assert all(event.total == 40 and event.stage == "lanczos" for event in events)
    assert np.isnan(events[0].partial.orthogonality)


def test_callable_and_scipy_operators(separated):
    import scipy.sparse.linalg as sla

    matrix, eigenvalues = separated
    dense = cw.lanczos(matrix, steps=20, seed=0)
    tensor = torch.from_numpy(matrix)
    via_callable = cw.lanczos(cw.as_operator(lambda v: tensor @ v, dim=400), steps=20, seed=0)
    via_scipy = cw.lanczos(sla.aslinearoperator(matrix), steps=20, seed=0)
    np.testing.assert_allclose(via_callable.ritz_values, dense.ritz_values, atol=1e-12)
    np.testing.assert_allclose(via_scipy.ritz_values, dense.ritz_values, atol=1e-12)


@given(
    size=st.integers(min_value=2, max_value=40),
    steps=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_properties_on_random_symmetric_matrices(size, steps, seed):
    rng = np.random.default_rng(seed)
    entries = rng.standard_normal((size, size))
    matrix = (entries + entries.T) / 2
    eigenvalues = np.linalg.eigvalsh(matrix)
    start = rng.standard_normal(size)
    result = cw.lanczos(matrix, steps=steps, start=start)
    nodes, weights = result.nodes(), result.weights()
    taken = result.num_steps[0]
    assert 1 <= taken <= min(steps, size)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(weights >= 0)
    spread = max(1.0, np.abs(eigenvalues).max())
    assert np.all(nodes >= eigenvalues[0] - 1e-9 * spread) and np.all(nodes <= eigenvalues[-1] + 1e-9 * spread)
    assert result.orthogonality < 1e-12
    orders = 2 * taken
    exact = quadratic_forms(matrix / spread, start, orders)
    quadrature = np.array([weights @ (nodes / spread) ** k for k in range(orders)])
    np.testing.assert_allclose(quadrature, exact, atol=1e-10)


# ---- bad input ------------------------------------------------------------------------------------


def test_non_square_matrix_is_rejected():
    with pytest.raises(ValueError, match="square"):
        cw.lanczos(np.ones((3, 4)), steps=2)


def test_clearly_non_symmetric_matrix_is_rejected():
    with pytest.raises(ValueError, match="symmetric"):
        cw.lanczos(np.triu(np.ones((5, 5))), steps=2)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "10"])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        cw.lanczos(np.eye(4), steps=steps)


def test_wrong_shape_from_matvec_names_the_step():
    operator = cw.as_operator(lambda v: torch.cat([v, v]), dim=6, check_symmetric=False)
    with pytest.raises(ValueError, match=r"lanczos step 1: .*shape \(6,\); got \(12,\)"):
        cw.lanczos(operator, steps=3, check_symmetric=False)


def test_nan_from_matvec_names_the_step():
    calls = []

    def flaky(vector):
        calls.append(1)
        return vector * (float("nan") if len(calls) == 3 else 2.0 + len(calls) * vector)

    with pytest.raises(ValueError, match="lanczos step 3: .*NaN or inf"):
        cw.lanczos(cw.as_operator(flaky, dim=10, check_symmetric=False), steps=5, check_symmetric=False)


@pytest.mark.parametrize("dtype", [np.int64, np.complex128, np.float16, "int8"])
def test_unknown_dtype_is_rejected(dtype):
    with pytest.raises(TypeError, match="float32 or float64"):
        cw.lanczos(np.eye(4).astype(dtype), steps=2)
    with pytest.raises(TypeError, match="float32 or float64"):
        cw.as_operator(lambda v: v, dim=4, dtype=dtype)


def test_unknown_reorthogonalisation_is_rejected():
    with pytest.raises(ValueError, match=r"reorthogonalisation must be one of \('dgks', 'twice'\); got 'once'"):
        cw.lanczos(np.eye(4), steps=2, reorthogonalisation="once")


def test_bad_start_vectors():
    with pytest.raises(ValueError, match=r"start must have shape \(4,\)"):
        cw.lanczos(np.eye(4), steps=2, start=np.ones(5))
    with pytest.raises(ValueError, match="start must hold finite, nonzero vectors"):
        cw.lanczos(np.eye(4), steps=2, start=np.zeros(4))
    with pytest.raises(ValueError, match="num_vectors=3 disagrees"):
        cw.lanczos(np.eye(4), steps=2, num_vectors=3, start=np.ones((2, 4)))
    with pytest.raises(ValueError, match="distribution must be one of"):
        cw.lanczos(np.eye(4), steps=2, distribution="uniform")
    with pytest.raises(ValueError, match="num_vectors must be"):
        cw.lanczos(np.eye(4), steps=2, num_vectors=0)


@pytest.mark.parametrize("reorthogonalisation", ["dgks", "twice"])
def test_only_two_gram_schmidt_passes_keep_a_full_float32_run_exact(reorthogonalisation):
    """A spiked spectrum in float32, run for ``P`` steps: the Ritz values must be all the eigenvalues.

    Once the spikes converge, each new residual is a small difference of large
    products, and one classical Gram-Schmidt pass of the raw product ``A v_j``
    leaves components along the earlier vectors that grow from step to step.
    Measured with that one pass: ``||V V^T - I||_2 = 91`` and Ritz values off by
    ``4e-3 * lambda_max`` (ghost copies of the spikes instead of bulk
    eigenvalues); with two passes, ``4e-7`` (3 eps) and ``1e-8 * lambda_max``.
    The default subtracts the three-term recurrence before its one pass,
    which leaves the pass little to remove: 5e-7 and ``1e-8 * lambda_max``,
    with a second pass on one step (the last).
    """
    size, spikes = 100, [1e4, 3e3]
    eigenvalues = np.concatenate([np.random.default_rng(0).uniform(0.0, 1.0, size - len(spikes)), spikes])
    matrix = cw.synthetic.with_spectrum(eigenvalues, seed=1).astype(np.float32)
    exact = np.linalg.eigvalsh(matrix.astype(np.float64))  # of the float32 matrix itself
    result = cw.lanczos(
        matrix, steps=size, seed=0, store_vectors=True, breakdown_tol=0.0, reorthogonalisation=reorthogonalisation
    )
    assert result.num_steps[0] == size
    basis = result.basis[0].double()
    measured = torch.linalg.matrix_norm(basis @ basis.T - torch.eye(size, dtype=torch.float64), ord=2).item()
    eps = np.finfo(np.float32).eps
    assert measured == pytest.approx(result.orthogonality, rel=1e-12)
    assert measured < 50 * eps
    np.testing.assert_allclose(result.nodes(0), exact, rtol=0, atol=1e-5 * exact[-1])


# ---- selective reorthogonalisation (DGKS) ----------------------------------------------------------


def measured_orthogonality(basis: torch.Tensor) -> float:
    """``||V V^T - I||_2`` of the rows of ``basis`` (k, P), in float64."""
    rows = basis.double()
    return torch.linalg.matrix_norm(rows @ rows.T - torch.eye(rows.shape[0], dtype=torch.float64), ord=2).item()


def spiked_float32(size: int, spikes: list) -> np.ndarray:
    """A float32 matrix with a bulk in [0, 1] and the given large eigenvalues."""
    eigenvalues = np.concatenate([np.random.default_rng(0).uniform(0.0, 1.0, size - len(spikes)), spikes])
    return cw.synthetic.with_spectrum(eigenvalues, seed=1).astype(np.float32)


def test_dgks_second_pass_keeps_a_spiked_float32_run_orthogonal_where_one_pass_does_not(monkeypatch):
    """Spike ``3e6`` over a bulk in [0, 1], float32: ``eps * lambda_max`` exceeds the bulk's ``beta``.

    A component of ``v_j`` along the converged top Ritz vector, ``eps`` in
    size, comes back in ``A v_j`` multiplied by ``3e6``: then one pass removes
    most of the residual and its own rounding leaves ``v_{j+1}`` leaning on the
    basis again, more at each step. Measured: one pass on every step (the DGKS
    test switched off) ``||V V^T - I||_2 = 0.18``; DGKS, with a second pass on
    11 of 100 steps, ``6e-7``; two passes ``4e-7``. Ritz values of both within
    ``4e-8 * lambda_max`` of the eigenvalues.
    """
    size = 100
    matrix = spiked_float32(size, [3e6])
    exact = np.linalg.eigvalsh(matrix.astype(np.float64))
    kwargs = dict(steps=size, seed=0, store_vectors=True, breakdown_tol=0.0)
    dgks = cw.lanczos(matrix, **kwargs)
    twice = cw.lanczos(matrix, reorthogonalisation="twice", **kwargs)
    assert 0 < np.sum(dgks.gram_schmidt_passes == 2) < size
    assert measured_orthogonality(dgks.basis[0]) <= 1e-5
    for result in (dgks, twice):
        np.testing.assert_allclose(result.nodes(0), exact, rtol=0, atol=1e-6 * exact[-1])
    monkeypatch.setattr(LANCZOS_MODULE, "DGKS_ETA", 0.0)  # never repeat a pass
    once = cw.lanczos(matrix, **kwargs)
    assert np.all(once.gram_schmidt_passes[0, : size - 1] == 1)
    assert measured_orthogonality(once.basis[0]) > 1e-2


@pytest.mark.parametrize(
    ("make", "dtype", "num_vectors", "breakdown_tol"),
    [
        (lambda: cw.synthetic.wigner(2000, seed=3), np.float64, 2, None),
        (lambda: cw.synthetic.wigner(2000, seed=3), np.float32, 1, None),
        (lambda: spiked_float32(100, [3e6, 1e6]), np.float32, 3, 0.0),
    ],
    ids=["wigner-float64", "wigner-float32", "spiked-float32-3-starts"],
)
def test_dgks_and_two_passes_give_the_same_ritz_values(make, dtype, num_vectors, breakdown_tol):
    """Both loops build the same ``T`` to rounding: Ritz values within ``20 eps ||A||``.

    Measured: ``3.0 eps`` (Wigner float64), ``0.4 eps`` (Wigner float32),
    ``0.2 eps`` (spiked float32, 100 steps, three start vectors, each deciding
    its second passes alone: 18, 12 and 23 of them).
    """
    matrix = make().astype(dtype)
    norm = np.abs(np.linalg.eigvalsh(matrix.astype(np.float64))).max()
    kwargs = dict(steps=100, num_vectors=num_vectors, seed=0, breakdown_tol=breakdown_tol)
    dgks = cw.lanczos(matrix, **kwargs)
    twice = cw.lanczos(matrix, reorthogonalisation="twice", **kwargs)
    assert dgks.num_steps.tolist() == twice.num_steps.tolist() == [100] * num_vectors
    np.testing.assert_allclose(dgks.ritz_values, twice.ritz_values, rtol=0, atol=20 * np.finfo(dtype).eps * norm)


def test_basis_reads_per_step_count_the_gram_schmidt_passes(wigner_2000):
    """Two reads of the basis per pass: 2 per step when no second pass is needed, 4 with ``"twice"``."""
    calm = cw.lanczos(wigner_2000, steps=100, num_vectors=2)
    assert calm.gram_schmidt_passes.shape == (2, 100)
    assert calm.basis_reads_per_step <= 2.5
    assert calm.basis_reads_per_step == 2.0 * calm.gram_schmidt_passes.mean()
    assert cw.lanczos(wigner_2000, steps=100, reorthogonalisation="twice").basis_reads_per_step == 4.0

    spiked = cw.lanczos(spiked_float32(100, [3e6]), steps=100, breakdown_tol=0.0)
    passes = spiked.gram_schmidt_passes[0]
    assert set(np.unique(passes)) == {1, 2}
    assert spiked.basis_reads_per_step == pytest.approx(2.0 * passes.mean()) and spiked.basis_reads_per_step > 2.0
    cut = spiked.truncate(40)
    np.testing.assert_array_equal(cut.gram_schmidt_passes[0], passes[:40])
