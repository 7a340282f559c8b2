"""The shape of a landscape sweep's passes: how many points, on how many samples, timed on the user's machine.

A pass of :func:`curvwidgets.loss_landscape` evaluates ``k`` points (one
``vmap`` over stacked parameter sets, or a plain call when ``k = 1``) on a
piece of ``s`` samples of a batch. Which shape is fastest per point and
sample depends on the model and the CPU's caches more than on any rule: on
one 2-core AMD EPYC a small CNN ran twice as fast per sample in pieces of 32
samples as of 512, while an MLP ran 2.3x slower there. So the shape is timed
on the sweep's own first passes: the first points are evaluated on pieces of
each candidate shape in turn (work the sweep needs anyway), and the rest of
the sweep runs at the fastest.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

#: Points per pass that the automatic choice tries besides one at a time.
CANDIDATE_POINTS = 8
#: Point-samples per pass (points x samples) of the candidates: for one point, pieces of 32, 128 and 512
#: samples; for 8 points, of 16 and 64 (not 4: see MIN_SAMPLES).
PASS_SIZES = (32, 128, 512)
#: Several points are not tried on pieces of fewer samples (a pass of 8 points on 4 samples costs more in
#: Python than in arithmetic).
MIN_SAMPLES = 8
#: Pieces of each candidate evaluated before its passes are timed, where a piece holds fewer passes than
#: TIMED_PASSES: the first warms up the shape (kernels chosen for it, buffers allocated).
WARM_PIECES = 1
#: A candidate this much slower than the fastest so far is not timed further (one pass is enough to say), and
#: the larger pieces of its number of points are left out.
SLOWER = 1.5
#: Larger pieces of a number of points are tried only while each is at least 10% faster than the one before:
#: a near tie says the cost per sample has stopped falling, and a larger piece costs more to explore.
LARGER_GAIN = 0.9
#: Passes timed of each candidate (over as many pieces as that takes); their median is kept, so that a burst
#: of load on the machine during one pass does not decide.
TIMED_PASSES = 3

Shape = Tuple[int, Optional[int]]  # (points per pass, samples per pass or None for whole batches)


class PassPlanner:
    """The points and samples of every pass: given, or timed on the sweep's first points.

    Parameters
    ----------
    points : int or None
        Points per pass, or None to choose 1 or ``first_points``.
    samples : int or None
        Samples per pass (the data re-cut into pieces of that many), or
        None to choose among :data:`PASS_SIZES` ``// points``.
    first_points : int
        The points of the sweep's first chunk, over which the candidates are
        timed (the sweep's points, at most :data:`CANDIDATE_POINTS`, or
        ``points``).
    timed : bool
        Whether the shape may be timed at all (not with ``bn="recompute"``,
        whose passes each recompute the BatchNorm statistics): without it,
        what is not given is one point on whole batches.
    sync : callable, optional
        Waits for the device's queued work (``torch.cuda.synchronize``) before a clock is read.

    Notes
    -----
    Candidates are tried in the order (1, 32), (k, 32/k), (1, 128), (k, 128/k),
    (1, 512), (k, 512/k), those of several points on fewer than
    :data:`MIN_SAMPLES` samples left out. Each candidate's passes are timed
    until there are :data:`TIMED_PASSES`, and the median is kept, in seconds
    per point and sample: one piece for one point at a time over
    ``first_points`` points (8 passes; the median leaves out a slow first
    one); for ``k`` points together, a warm-up piece (:data:`WARM_PIECES`)
    and three more of one pass each. All of it is the sweep's own work. The
    data are a stream of samples: a piece may join the end of one batch to
    the start of the next, so the shapes do not depend on the batch size the
    data came in. A candidate not :data:`LARGER_GAIN` faster than the one
    before it with as many points leaves out the larger ones (a pass's cost
    per sample grows or shrinks with its size, once), and so does one over
    :data:`SLOWER` times the fastest so far, after a single timed pass:
    exploring a CNN's 8-point passes of 64 samples costs more than all the
    rest when one point on 32 samples runs twice as fast. Candidates that
    the sweep's data did not reach in full are not timed. Several points
    that fail together (a model that does not ``vmap``, or runs out of
    memory) leave one point per pass, unless ``points`` was given.
    """

    def __init__(self, points: Optional[int], samples: Optional[int], first_points: int, timed: bool = True,
                 sync: Callable[[], None] = lambda: None):
        self.points, self.samples, self.first_points, self.sync = points, samples, first_points, sync
        self.chosen: Shape = (points if points is not None else 1, samples)
        self.pending: Optional[List[Shape]] = None if timed and (points is None or samples is None) else []
        self.seconds: Dict[Shape, float] = {}  # seconds per point and sample of each candidate timed
        self.spent: List[Tuple[float, int]] = []  # (seconds, point-samples) of each candidate's piece
        self.used: Dict[Shape, int] = {}  # pieces evaluated of each candidate
        self._timed: Dict[Shape, List[float]] = {}  # seconds of each timed pass of each candidate
        self._current: Optional[Shape] = None  # the candidate whose piece is being evaluated
        self._passes: List[float] = []  # seconds of its passes so far

    @property
    def exploring(self) -> bool:
        """Whether candidates are still being timed (the sweep's passes hold :attr:`first_points` points then)."""
        return self.pending is None or bool(self.pending)

    def candidates(self) -> List[Shape]:
        """The shapes timed, in the order they are tried."""
        point_options = (1, self.first_points) if self.points is None and self.first_points > 1 else (
            (self.first_points,) if self.points is not None else (1,))
        if self.samples is not None:
            shapes = [(k, self.samples) for k in point_options]
        else:
            shapes = [(k, size // k) for size in PASS_SIZES for k in point_options
                      if k == 1 or size // k >= MIN_SAMPLES]
        return list(dict.fromkeys(shapes))

    def next_shape(self) -> Shape:
        """The shape of the next piece: the next candidate while exploring, else the chosen one."""
        if self.pending is None:
            self.pending = self.candidates() if len(self.candidates()) > 1 else []
        return self.pending[0] if self.pending else self.chosen

    def start_piece(self, shape: Shape) -> None:
        """A piece of ``shape`` (from :meth:`next_shape`) is about to be evaluated, each pass in :meth:`timed_pass`."""
        self._current, self._passes = (shape, []) if self.pending and shape == self.pending[0] else (None, [])

    def end_piece(self, samples: int) -> None:
        """The piece holds ``samples`` samples and is done: a candidate's piece of its full size counts."""
        shape, self._current = self._current, None
        if shape is not None and samples == shape[1]:
            self._piece_done(shape)

    @contextlib.contextmanager
    def timed_pass(self) -> Iterator[None]:
        """Around one pass of the piece being evaluated: timed when the piece is a candidate's."""
        if self._current is None:
            yield
            return
        self.sync()
        began = time.perf_counter()
        yield
        self.sync()
        self._passes.append(time.perf_counter() - began)

    def _piece_done(self, shape: Shape) -> None:
        """Count a candidate's piece: a warm-up, or its passes' times; time the candidate once it has enough."""
        if shape not in self.pending or not self._passes:  # its points failed together meanwhile
            return
        self.spent.append((sum(self._passes), shape[1] * self.first_points))
        self.used[shape] = self.used.get(shape, 0) + 1
        if self.used[shape] <= WARM_PIECES and len(self._passes) < TIMED_PASSES:
            return  # a warm-up: of a piece with enough passes, the median leaves a slow first one out instead
        times = self._timed.setdefault(shape, [])
        times.extend(self._passes)
        rate = statistics.median(times) / (shape[0] * shape[1])
        if len(times) < TIMED_PASSES and rate <= SLOWER * min(self.seconds.values(), default=math.inf):
            return
        self.seconds[shape] = rate
        self.pending.remove(shape)
        smaller = [s for (k, s) in self.seconds if k == shape[0] and s < shape[1]]
        if smaller and rate > LARGER_GAIN * self.seconds[(shape[0], max(smaller))]:
            self.pending = [other for other in self.pending if other[0] != shape[0]]
        best_of: Dict[int, float] = {}  # the fastest timed of each number of points
        for (points, _), value in self.seconds.items():
            best_of[points] = min(value, best_of.get(points, math.inf))
        fastest = min(best_of.values())
        self.pending = [other for other in self.pending if best_of.get(other[0], 0.0) <= SLOWER * fastest]
        if not self.pending:
            self.settle()

    def settle(self) -> None:
        """Stop timing (the first chunk is done, or every candidate timed) and keep the fastest shape timed."""
        self.pending = []
        if self.seconds:
            points, samples = min(self.seconds, key=self.seconds.__getitem__)
            self.chosen = (points, samples if self.samples is None else self.samples)

    def failed_together(self) -> bool:
        """A pass of several points failed: whether to go on one point at a time (not when the points are given)."""
        if self.points is not None:
            return False
        self.pending = [shape for shape in (self.pending or []) if shape[0] == 1]
        self.seconds = {shape: value for shape, value in self.seconds.items() if shape[0] == 1}
        self.chosen = (1, self.chosen[1])
        if not self.pending:
            self.settle()
        return True

    @property
    def cost(self) -> float:
        """Seconds the timing cost: the exploring pieces' time beyond what the chosen shape takes for their work."""
        rate = min(self.seconds.values(), default=0.0)
        return sum(max(0.0, seconds - rate * work) for seconds, work in self.spent)

    def timing(self) -> Dict[str, object]:
        """For ``meta["pass_timing"]``: seconds per point-sample by ``"points x samples"``, and the cost (seconds)."""
        return {"seconds_per_point_sample": {f"{k} x {s}": value for (k, s), value in self.seconds.items()},
                "first_points": self.first_points, "cost": self.cost}
