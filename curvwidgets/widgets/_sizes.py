"""How large the widgets' computations are for each named data set: a few seconds on a CPU, while a person waits.

``cw.data.load``'s defaults suit a script; a widget runs while someone watches.
A data set picked by name in a widget's menu is loaded, and the spectra and
landscapes of a :class:`~curvwidgets.widgets.Dashboard` are sized, by
:data:`WIDGET_SIZES`: ``tinytext`` is loaded as 400 training and 100 test
windows in batches of 50 (an epoch of ``TinyTransformer`` takes a fraction
of a second on one CPU core), its spectra are computed on a seeded subset of
64 windows and its landscapes have 11 points per line. Every other data set
keeps ``cw.data.load``'s defaults, every sample and 21 points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["WidgetSizes", "WIDGET_SIZES", "sizes_for"]


@dataclass(frozen=True)
class WidgetSizes:
    """The sizes of the widgets' computations on one named data set.

    Attributes
    ----------
    load : mapping
        Keyword arguments of :func:`curvwidgets.data.load` beyond the name,
        ``device`` and ``seed`` (the data set's options, ``batch_size``).
    num_samples : int
        Samples of the seeded subset a spectrum's products are computed on; 0 for every sample.
    n_points : int
        Points per line of a landscape (per axis of a plane).
    """

    load: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    num_samples: int = 0
    n_points: int = 21


#: The sizes by data set name (:func:`sizes_for` gives ``WidgetSizes()`` for the others).
WIDGET_SIZES: Mapping[str, WidgetSizes] = MappingProxyType({
    "tinytext": WidgetSizes(load=MappingProxyType({"num_samples": 400, "num_test": 100, "batch_size": 50}),
                            num_samples=64, n_points=11),
})


def sizes_for(dataset: str) -> WidgetSizes:
    """The widgets' sizes for the data set named ``dataset`` (one of ``cw.data.names()``).

    Examples
    --------
    >>> sizes_for("tinytext").num_samples, sizes_for("digits").num_samples
    (64, 0)
    """
    return WIDGET_SIZES.get(dataset, WidgetSizes())
