"""Build ``curvwidgets/training/data/digits.npz``, the embedded ``digits`` data set.

The data are the 1797 8x8 images of the UCI "Optical Recognition of
Handwritten Digits" data set (E. Alpaydin and C. Kaynak, 1998; the
``optdigits.tes`` part, as bundled with scikit-learn's
``sklearn.datasets.load_digits``),
https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits,
licensed under Creative Commons Attribution 4.0 (CC BY 4.0). Each pixel counts
the "on" pixels of a 4x4 block of a 32x32 bitmap, so it is an integer in
0..16.

scikit-learn is needed only to run this script, not by curvwidgets. It was run
once, with scikit-learn 1.9.1, as::

    pip install --target /tmp/skl --no-deps scikit-learn joblib threadpoolctl cloudpickle narwhals
    PYTHONPATH=/tmp/skl python scripts/make_digits_npz.py

The file holds three arrays and no pickled objects (``np.load(path,
allow_pickle=False)`` reads it):

``images``  uint8, shape (1797, 8, 8), values 0..16, in scikit-learn's order
``labels``  uint8, shape (1797,), the digit 0..9
``is_test`` bool, shape (1797,), the fixed test split: 360 images, stratified
            (each class gives its share of 360, rounded by largest remainder,
            chosen uniformly at random with ``numpy.random.default_rng(0)``).

The split is stored rather than recomputed at load time, so it never depends
on the numpy version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TEST_SIZE = 360
SPLIT_SEED = 0
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "curvwidgets" / "training" / "digits.npz"


def stratified_test_mask(labels: np.ndarray, test_size: int, seed: int) -> np.ndarray:
    """Boolean mask of a stratified random test split of ``test_size`` samples.

    Class ``k`` with ``n_k`` samples gets ``test_size * n_k / n`` test samples,
    floored, and the leftover slots go to the classes with the largest
    remainders (ties to the smaller class index).
    """
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * test_size / counts.sum()
    take = np.floor(quota).astype(int)
    leftover = test_size - int(take.sum())
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[:leftover]] += 1
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.shape, dtype=bool)
    for cls, k in zip(classes, take):
        members = np.flatnonzero(labels == cls)
        mask[rng.permutation(members)[:k]] = True
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images
    if images.shape != (1797, 8, 8) or images.min() < 0 or images.max() > 16:
        raise RuntimeError(f"unexpected digits images: shape {images.shape}")
    if not np.array_equal(images, np.round(images)):
        raise RuntimeError("digits pixels are expected to be integers 0..16")
    labels = digits.target.astype(np.uint8)
    is_test = stratified_test_mask(labels, TEST_SIZE, SPLIT_SEED)
    np.savez_compressed(args.out, images=images.astype(np.uint8), labels=labels, is_test=is_test)
    print(f"wrote {args.out}: {len(labels)} images, {int(is_test.sum())} in the test split")


if __name__ == "__main__":
    main()
