"""A decision's named inputs as a typed vector: one layout of names shared by every decision with the same names,
and one array of C doubles per decision.

A GLFT decision carries ~120 named numbers (the touch, κ, σ, A, γ and each of its features, every skew and term,
each ladder level; see :mod:`apps.engine.quoting.quoter`). Held as a dict they cost, per decision, a hash table
and one Python float object each; the decision is made thousands of times a minute and most are never looked at.
Here the names live once, in an interned :class:`InputLayout` (a quoter produces two or three layouts per
configuration: quoted, not quoted, with a taker order), and a decision holds only its values, 8 bytes each,
in an ``array('d')``. A name is attached when the record is read, serialised or shown: :class:`DecisionInputs`
is a read-only ``Mapping[str, float]``, so ``inputs["mid"]``, ``inputs.get("q", nan)``, ``inputs.items()`` and
``dict(inputs)`` work as they did on the dict. ``json.dumps`` takes only a real dict: serialise ``dict(inputs)``,
``inputs.to_dict()`` or ``inputs.finite_or_none()`` (what the recorder and the live page do).

Every value is a float (the quoter's inputs are; an int or a bool given to :meth:`DecisionInputs.from_mapping`
is stored as its float, as ``array('d')`` stores it). Key order is the order the decision wrote them in.

Equality: two records are equal when they have the same names in the same order and the same doubles bit for
bit (so a NaN equals a NaN with the same bits, and ``-0.0 != 0.0``): a record is a value, and two runs that made
the same decision compare equal. Against any other mapping the comparison is the dict one.

Pure: no Django, no I/O (the compiled quoter builds the same objects from C, ``apps.engine.quoting._quote``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, ClassVar

__all__ = ["DecisionInputs", "InputLayout"]


class InputLayout:
    """The names of a decision's inputs, in order, with their positions; one object per distinct tuple of names.

    >>> InputLayout.of(("mid", "q")) is InputLayout.of(("mid", "q"))
    True
    """

    __slots__ = ("index", "names")
    _interned: ClassVar[dict[tuple[str, ...], InputLayout]] = {}
    # a decision's names come from the quoter's code paths and the strategy's configuration: a handful per
    # session. The cap keeps a caller that invents names per call from growing the table without bound.
    MAX_INTERNED = 4096

    names: tuple[str, ...]
    index: dict[str, int]

    def __init__(self, names: tuple[str, ...]) -> None:
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise TypeError(f"decision input names must be str, got {type(name).__name__} {name!r} at {i}")
            if name in index:
                raise ValueError(f"decision input {name!r} appears twice (positions {index[name]} and {i})")
            index[name] = i
        self.names = names
        self.index = index

    @classmethod
    def of(cls, names: tuple[str, ...]) -> InputLayout:
        """The shared layout for ``names`` (created and kept on first use)."""
        layout = cls._interned.get(names)
        if layout is None:
            layout = cls(tuple(names))
            if len(cls._interned) < cls.MAX_INTERNED:
                cls._interned[layout.names] = layout
        return layout

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"InputLayout({len(self.names)} names: {', '.join(self.names[:4])}{', …' if len(self) > 4 else ''})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_layout_of, (self.names,))  # a module function: a bound classmethod does not pickle everywhere


def _layout_of(names: tuple[str, ...]) -> InputLayout:
    return InputLayout.of(names)


class _Items(ItemsView):
    __slots__ = ()

    def __iter__(self) -> Iterator[tuple[str, float]]:
        m = self._mapping
        return zip(m.layout.names, m.vector, strict=True)


class _Values(ValuesView):
    __slots__ = ()

    def __iter__(self) -> Iterator[float]:
        return iter(self._mapping.vector)


class DecisionInputs(Mapping):
    """A decision's named inputs: a shared :class:`InputLayout` (``layout``) and the values (``vector``, array('d')).

    >>> r = DecisionInputs.from_mapping({"mid": 100.0, "q": 0.01})
    >>> r["mid"], r.get("gamma", -1.0), list(r), len(r)
    (100.0, -1.0, ['mid', 'q'], 2)
    >>> r == DecisionInputs.from_mapping({"mid": 100.0, "q": 0.01}), r == {"q": 0.01, "mid": 100.0}
    (True, True)
    """

    __slots__ = ("layout", "vector")

    layout: InputLayout
    vector: array

    def __init__(self, layout: InputLayout, values: array) -> None:
        if not isinstance(layout, InputLayout):
            raise TypeError(f"layout must be an InputLayout, got {type(layout).__name__}")
        if not (isinstance(values, array) and values.typecode == "d"):
            raise TypeError(f"values must be array('d'), got {type(values).__name__}")
        if len(values) != len(layout.names):
            raise ValueError(f"{len(values)} values for {len(layout.names)} names")
        self.layout = layout
        self.vector = values

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> DecisionInputs:
        """The record of ``m``'s items, in ``m``'s order; a value that is not a number raises, naming its key."""
        if isinstance(m, DecisionInputs):
            return m
        try:
            values = array("d", m.values())
        except TypeError:
            for k, v in m.items():
                try:
                    array("d", (v,))
                except TypeError:
                    raise TypeError(f"decision input {k!r} must be a number, got {type(v).__name__} {v!r}") from None
            raise
        return cls(InputLayout.of(tuple(m)), values)

    # --- the Mapping -------------------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> float:
        return self.vector[self.layout.index[key]]

    def get(self, key: str, default: Any = None) -> Any:
        i = self.layout.index.get(key)
        return default if i is None else self.vector[i]

    def __contains__(self, key: object) -> bool:
        return key in self.layout.index

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.names)

    def __len__(self) -> int:
        return len(self.vector)

    def keys(self) -> KeysView:
        return KeysView(self)

    def items(self) -> ItemsView:
        return _Items(self)

    def values(self) -> ValuesView:
        return _Values(self)

    def to_dict(self) -> dict[str, float]:
        """A plain dict of the record (what ``dict(inputs)`` gives, faster)."""
        return dict(zip(self.layout.names, self.vector, strict=True))

    def finite_or_none(self) -> dict[str, float | None]:
        """The record as JSON can hold it: NaN and ±inf become ``None``."""
        return {k: (v if math.isfinite(v) else None) for k, v in zip(self.layout.names, self.vector, strict=True)}

    # --- a value -----------------------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DecisionInputs):
            return (
                self.layout is other.layout or self.layout.names == other.layout.names
            ) and self.vector.tobytes() == other.vector.tobytes()
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a Mapping: not hashable

    def __repr__(self) -> str:
        return f"DecisionInputs({self.to_dict()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (DecisionInputs, (self.layout, self.vector))
