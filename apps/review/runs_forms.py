"""The "launch a backtest" and "launch a sweep" forms of ``/review/backtests/``.

Data is either **stored** market data (an instrument with ticks in the database and an optional time range inside
what is stored) or a **recording** offered from the recordings folders by
:func:`apps.dashboard.start_form.find_recordings` (a key posted by the form, never a path typed in). Parameters are
a preset (:mod:`apps.control.presets`) with JSON overrides merged over it section by section, plus an optional
``max_events`` (``params.backtest.max_events``) to keep a run small. A sweep adds one or two dotted parameters
(``strategy.gamma``) with comma-separated values, at most :data:`MAX_POINTS` points.

Everything is validated here, the full parameter object of every point included, so a bad value is a form error
naming its field and nothing is created; the launch then goes through :func:`apps.trading.backtest.start_run` /
:func:`~apps.trading.backtest.start_sweep`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import forms

from apps.control import presets
from apps.dashboard.start_form import Recording, find_recordings
from apps.marketdata import instruments
from apps.marketdata.models import Instrument
from apps.marketdata.selectors import stored_range_ns
from apps.trading.backtest import (
    SECTIONS,
    STORED,
    STRATEGIES,
    StoredRange,
    apply_point,
    expand_grid,
    ns_to_iso,
    params_for_instrument,
    parse_params,
    parse_time_ns,
)

SOURCES = (("stored", "stored market data"), ("recording", "a shared recording"))
MAX_EVENTS = 5_000_000
MAX_POINTS = 36  # a browser sweep: at most a 6×6 grid (manage.py and start_sweep allow more)
MAX_VALUES = 12  # per parameter


@dataclass(frozen=True)
class StoredData:
    """An instrument with market data in the database and the local-time span stored."""

    key: str  # "venue:symbol", what the form posts
    instrument: Instrument
    start_ns: int
    end_ns: int

    @property
    def label(self) -> str:
        return f"{self.key} · {ns_to_iso(self.start_ns)} → {ns_to_iso(self.end_ns)}"


def find_stored() -> list[StoredData]:
    """Every instrument with stored market data, with its stored span (one small query per table and instrument)."""
    out = []
    for inst in Instrument.objects.order_by("venue", "symbol"):
        bounds = stored_range_ns(inst.pk)
        if bounds is not None:
            out.append(StoredData(str(inst), inst, bounds[0], bounds[1]))
    return out


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_values(text: str) -> list[Any]:
    """``"1, 10, 1e3"`` → ``[1, 10, 1000.0]`` (integers stay integers); ValueError naming the bad value."""
    out: list[Any] = []
    for part in text.split(","):
        s = part.strip()
        if not s:
            raise ValueError("empty value (two commas, or a comma at an end)")
        try:
            out.append(int(s))
        except ValueError:
            try:
                out.append(float(s))
            except ValueError:
                raise ValueError(f"{s!r} is not a number") from None
    if len(set(out)) != len(out):
        raise ValueError("a value is repeated")
    return out


class BacktestForm(forms.Form):
    name = forms.CharField(max_length=80, required=False)
    source = forms.ChoiceField(choices=SOURCES, initial="stored", label="Data")
    stored = forms.ChoiceField(required=False, label="Stored data", help_text="with data 'stored market data'")
    start = forms.CharField(required=False, help_text="ISO-8601 UTC, inside the stored span; empty: its first event")
    end = forms.CharField(required=False, help_text="ISO-8601 UTC; empty: the last stored event")
    recording = forms.ChoiceField(required=False, help_text="with data 'a shared recording'")
    strategy = forms.ChoiceField(choices=[(s, s) for s in STRATEGIES], initial="glft")
    preset = forms.ChoiceField(choices=[(p.name, p.label) for p in presets.PRESETS], initial="default")
    overrides = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text='JSON merged over the preset, e.g. {"strategy": {"gamma": 2000}}',
    )
    max_events = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_EVENTS, help_text="replay only the first N events"
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0, help_text="paper venue seed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_data = {s.key: s for s in find_stored()}
        self.recordings: dict[str, Recording] = {r.key: r for r in find_recordings()}
        self.fields["stored"].choices = [("", "—")] + [(s.key, s.label) for s in self.stored_data.values()]
        self.fields["recording"].choices = [("", "—")] + [(r.key, r.label) for r in self.recordings.values()]

    # --- cleaning ------------------------------------------------------------------------------------------
    def clean_overrides(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("overrides") or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('must be a JSON object of sections, e.g. {"strategy": {...}}')
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data  # each field's own error says what is wrong
        self.data_source, self.fmt, known, inst = self._clean_source(data)
        if self.errors:
            return data
        params = _deep_merge(presets.preset_params(data["preset"]), data["overrides"])
        if data.get("max_events") is not None:
            params = _deep_merge(params, {"backtest": {"max_events": data["max_events"]}})
        self.params = instruments.with_instrument_defaults(params, known, grid=inst is None)
        self.instrument = inst
        try:
            parse_params(params_for_instrument(self.params, inst))
        except ValueError as exc:
            self.add_error("overrides", f"{exc} (preset {data['preset']!r} with these overrides)")
        return data

    def _clean_source(self, data: dict[str, Any]) -> tuple[Any, str, Any, Instrument | None]:
        if data["source"] == "stored":
            for other in ("recording",):
                if data.get(other):
                    self.add_error(other, "used only with data 'a shared recording'")
            chosen = self.stored_data.get(data.get("stored") or "")
            if chosen is None:
                self.add_error("stored", "choose one of the stored instruments listed")
                return None, STORED, None, None
            bounds = {}
            for name in ("start", "end"):
                text = (data.get(name) or "").strip()
                try:
                    bounds[name] = parse_time_ns(text, name) if text else None
                except ValueError as exc:
                    self.add_error(name, str(exc))
            if self.errors:
                return None, STORED, None, None
            inst = chosen.instrument
            try:
                _inst, rng = StoredRange(inst.venue, inst.symbol, bounds["start"], bounds["end"]).resolve()
            except ValueError as exc:
                self.add_error("end" if bounds["start"] is None and bounds["end"] is not None else "start", str(exc))
                return None, STORED, None, None
            return rng, STORED, instruments.lookup(inst.venue, inst.symbol), inst
        for other in ("stored", "start", "end"):
            if data.get(other):
                self.add_error(other, "used only with data 'stored market data'")
        rec = self.recordings.get(data.get("recording") or "")
        if rec is None:
            self.add_error("recording", "choose one of the recordings listed")
            return None, "", None, None
        return [rec.path], rec.fmt, instruments.get(rec.instrument), None

    # --- what the launch needs -------------------------------------------------------------------------------
    def describe(self) -> str:
        d = self.cleaned_data
        return d.get("name") or f"{d['strategy']} {d['preset']}"


class SweepForm(BacktestForm):
    param1 = forms.CharField(max_length=64, help_text="dotted parameter, e.g. strategy.gamma")
    values1 = forms.CharField(max_length=400, help_text="comma-separated, e.g. 1000, 5000, 20000")
    param2 = forms.CharField(max_length=64, required=False, help_text="optional second parameter")
    values2 = forms.CharField(max_length=400, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        grid: dict[str, list[Any]] = {}
        for i in ("1", "2"):
            key, text = (data.get(f"param{i}") or "").strip(), (data.get(f"values{i}") or "").strip()
            if not key and not text:
                continue
            if not key:
                self.add_error(f"param{i}", "give the parameter these values are for")
                continue
            parts = key.split(".")
            if len(parts) < 2 or parts[0] not in SECTIONS or not all(parts):
                self.add_error(
                    f"param{i}", f"must be 'section.field' with section one of {list(SECTIONS)}, got {key!r}"
                )
                continue
            if key in grid:
                self.add_error(f"param{i}", f"{key} is already the first parameter")
                continue
            try:
                values = parse_values(text) if text else []
            except ValueError as exc:
                self.add_error(f"values{i}", str(exc))
                continue
            if not values:
                self.add_error(f"values{i}", "give at least one value")
            elif len(values) > MAX_VALUES:
                self.add_error(f"values{i}", f"{len(values)} values; at most {MAX_VALUES}")
            else:
                grid[key] = values
        if self.errors:
            return data
        points = expand_grid(grid)
        if len(points) > MAX_POINTS:
            self.add_error("values2" if len(grid) > 1 else "values1", f"{len(points)} points; at most {MAX_POINTS}")
            return data
        for point in points:
            try:
                parse_params(params_for_instrument(apply_point(self.params, point), self.instrument))
            except ValueError as exc:
                i = "1" if len(grid) == 1 or _bad_key(exc, next(iter(grid))) else "2"
                self.add_error(f"param{i}" if "unknown" in str(exc) else f"values{i}", f"at {point}: {exc}")
                return data
        self.grid = grid
        return data


def _bad_key(exc: ValueError, key: str) -> bool:
    """Whether the error is about ``key`` (``strategy.gamma`` → the message names ``params.strategy`` and ``gamma``)."""
    section, name = key.split(".")[0], key.split(".")[-1]
    text = str(exc)
    return f"params.{section}" in text and name in text
