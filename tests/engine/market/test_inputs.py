"""The decision's typed record (apps/engine/market/inputs.py): a shared layout of names and an array of doubles, read
as a ``Mapping[str, float]``."""

from __future__ import annotations

import json
import math
import pickle
import struct
import sys
from array import array

import pytest

from apps.engine.market.inputs import DecisionInputs, InputLayout


def test_a_record_keeps_the_names_in_order_and_every_value_as_a_double():
    r = DecisionInputs.from_mapping({"mid": 100.5, "q": 0, "drift_ok": True, "kappa": math.nan})
    assert list(r) == ["mid", "q", "drift_ok", "kappa"]
    assert r.vector.typecode == "d" and len(r.vector) == 4
    assert [type(v) for v in r.values()] == [float] * 4
    assert (r["mid"], r["q"], r["drift_ok"]) == (100.5, 0.0, 1.0) and math.isnan(r["kappa"])
    assert r.get("gamma") is None and r.get("gamma", -1.0) == -1.0 and r.get("q") == 0.0
    assert "mid" in r and "gamma" not in r and len(r) == 4
    assert list(r.keys()) == list(r) and [k for k, _ in r.items()] == list(r)
    with pytest.raises(KeyError, match="gamma"):
        r["gamma"]


def test_records_with_the_same_names_share_one_layout():
    a = DecisionInputs.from_mapping({"mid": 1.0, "q": 2.0})
    b = DecisionInputs.from_mapping({"mid": 3.0, "q": 4.0})
    c = DecisionInputs.from_mapping({"q": 4.0, "mid": 3.0})
    assert a.layout is b.layout and a.layout is InputLayout.of(("mid", "q"))
    assert c.layout is not a.layout  # the order is part of the layout
    assert a.layout.index == {"mid": 0, "q": 1}


def test_a_value_that_is_not_a_number_is_refused_with_its_name():
    with pytest.raises(TypeError, match=r"decision input 'best_bid' must be a number, got NoneType None"):
        DecisionInputs.from_mapping({"mid": 1.0, "best_bid": None})
    with pytest.raises(TypeError, match=r"'reason' must be a number, got str 'x'"):
        DecisionInputs.from_mapping({"reason": "x"})


def test_a_layout_refuses_a_name_twice_and_a_name_that_is_not_text():
    with pytest.raises(ValueError, match=r"'mid' appears twice \(positions 0 and 2\)"):
        InputLayout(("mid", "q", "mid"))
    with pytest.raises(TypeError, match="names must be str, got int 7 at 1"):
        InputLayout(("mid", 7))


def test_the_constructor_checks_its_parts():
    layout = InputLayout.of(("a", "b"))
    with pytest.raises(ValueError, match="1 values for 2 names"):
        DecisionInputs(layout, array("d", [1.0]))
    with pytest.raises(TypeError, match=r"values must be array\('d'\), got list"):
        DecisionInputs(layout, [1.0, 2.0])
    with pytest.raises(TypeError, match=r"values must be array\('d'\)"):
        DecisionInputs(layout, array("f", [1.0, 2.0]))
    with pytest.raises(TypeError, match="layout must be an InputLayout"):
        DecisionInputs(("a", "b"), array("d", [1.0, 2.0]))


def test_a_record_is_read_only():
    r = DecisionInputs.from_mapping({"mid": 1.0})
    with pytest.raises(TypeError):
        r["mid"] = 2.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        r.extra = 1  # type: ignore[attr-defined]


def test_two_records_are_equal_when_their_names_and_doubles_are_the_same_bits():
    def rec(**kw):
        return DecisionInputs.from_mapping(kw)

    assert rec(a=1.0, b=math.nan) == rec(a=1.0, b=math.nan)  # the same NaN: equal (a dict of fresh NaNs is not)
    assert rec(a=0.0) != rec(a=-0.0)
    assert rec(a=1.0) != rec(a=1.0 + 2**-52)
    assert rec(a=1.0, b=2.0) != rec(b=2.0, a=1.0)  # a different layout
    neg_nan = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000000))[0]
    assert rec(a=math.nan) != rec(a=neg_nan)
    # against a plain mapping: the dict comparison
    assert rec(a=1.0, b=2.0) == {"b": 2.0, "a": 1.0}
    assert rec(a=0.0) == {"a": -0.0} and rec(a=1.0) != {"a": 1.0, "b": 2.0}
    assert rec(a=1.0) != [("a", 1.0)]


def test_a_record_pickles_to_an_equal_record_on_the_same_layout():
    r = DecisionInputs.from_mapping({"mid": 100.0, "kappa": math.nan, "q": -0.25})
    back = pickle.loads(pickle.dumps(r))
    assert back == r and back.layout is r.layout
    assert pickle.loads(pickle.dumps(r.layout)) is r.layout


def test_a_record_becomes_json_through_its_dicts():
    r = DecisionInputs.from_mapping({"mid": 100.0, "kappa": math.nan, "edge": math.inf, "q": 0.5})
    assert list(r.to_dict()) == list(r) == list(dict(r))
    assert [struct.pack("<d", v) for v in r.to_dict().values()] == [struct.pack("<d", v) for v in dict(r).values()]
    assert json.loads(json.dumps(r.finite_or_none())) == {"mid": 100.0, "kappa": None, "edge": None, "q": 0.5}
    assert "'kappa': nan" in repr(r)


def test_a_record_is_smaller_than_the_dict_it_replaces():
    d = {f"input_{i}": float(i) + 0.5 for i in range(124)}  # a GLFT decision's size
    r = DecisionInputs.from_mapping(d)
    dict_bytes = sys.getsizeof(d) + sum(sys.getsizeof(v) for v in d.values())
    record_bytes = sys.getsizeof(r) + sys.getsizeof(r.vector)  # the layout is shared by every such decision
    assert record_bytes * 4 < dict_bytes, (record_bytes, dict_bytes)


def test_the_interned_layouts_are_bounded(monkeypatch):
    monkeypatch.setattr(InputLayout, "_interned", {})
    monkeypatch.setattr(InputLayout, "MAX_INTERNED", 3)
    layouts = [InputLayout.of((f"name_{i}",)) for i in range(5)]
    assert len(InputLayout._interned) == 3
    assert InputLayout.of(("name_4",)) is not layouts[4]  # past the cap: a fresh layout, still correct
    assert DecisionInputs.from_mapping({"name_4": 1.0})["name_4"] == 1.0
