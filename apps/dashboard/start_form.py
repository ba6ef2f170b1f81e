"""The overview's "start a session" form: instrument, data source, parameter preset.

Data sources:

* ``simulator``: the built-in market simulator (its own instrument, ``sim:SIM-BTCUSDT-<seed>``);
* ``stored``: every tick stored for a known instrument (``manage.py import_marketdata``), replayed at real speed;
* ``binance``: Binance live market data of a known Binance instrument (paper trading on live data: the orders
  go to the paper venue), through the connector whose URLs are the MM_BINANCE_* settings;
* ``recording``: a recorded file of a known instrument, offered from the recordings folders
  (:func:`recording_roots`: ``var/recordings/`` and, in a development checkout, ``../shared/data/``). The form
  offers only files found there; a path typed into the request is refused, so the page cannot be made to read
  any other file on the server.

The form checks its fields; the session is then created by :mod:`apps.control.services` (which validates the
parameters again, writes the audit row and queues the loop after commit).

:class:`StartLiveSessionForm` is the admin's alone (the page shows it to admins only and its endpoint is an
``admin_view``): a LIVE session on Hyperliquid, with real orders. It asks for the coin to be typed again as the
confirmation, and refuses at once when the credentials are not in the environment
(:func:`~apps.venues.hyperliquid.secrets.credentials_from_env`'s message names the variable), so no session is
created that could only fail when its loop starts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings

from apps.control import presets
from apps.marketdata import instruments
from apps.marketdata.identify import identify
from apps.trading.runtime import BINANCE_VENUES
from apps.venues.hyperliquid.secrets import CredentialsError, credentials_from_env
from mmweb import embedded

SIMULATOR = "simulator"
LIVE_DATA = "binance"
SOURCES = (
    (SIMULATOR, "built-in market simulator"),
    ("stored", "replay: ticks stored for the instrument"),
    ("recording", "replay: a recorded file"),
    (LIVE_DATA, "Binance live data (paper)"),
)
# formats tried, in order, to tell what a recording holds (identify() reads only the first lines)
_SNIFF = ("binance-raw", "hyperliquid", "tardis", "binance-public", "lobster")
_SUFFIXES = (".gz", ".csv", ".txt", ".jsonl")


@dataclass(frozen=True)
class Recording:
    key: str  # what the form posts: "<root name>/<relative path>"
    path: str
    fmt: str
    instrument: str  # registry key

    @property
    def label(self) -> str:
        return f"{self.instrument} · {self.key} ({self.fmt})"


def recording_roots() -> list[tuple[str, Path]]:
    return [
        ("var/recordings", embedded.var_dir() / "recordings"),
        ("shared/data", Path(settings.BASE_DIR).parent / "shared" / "data"),
    ]


@functools.lru_cache(maxsize=256)
def _sniff(path: str, _mtime_ns: int, _size: int) -> tuple[str, str] | None:
    """(format, registry key) of a recording of a known instrument, or None (cached per file version)."""
    for fmt in _SNIFF:
        try:
            found = identify([path], fmt)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if found is not None:
            known = instruments.lookup(found.venue, found.symbol)
            return (fmt, known.key) if known else None
    return None


def find_recordings() -> list[Recording]:
    """Recordings of known instruments under the recordings folders (two levels deep; ``derived`` skipped)."""
    out: list[Recording] = []
    for name, root in recording_roots():
        if not root.is_dir():
            continue
        for path in sorted(root.glob("**/*")):
            rel = path.relative_to(root)
            if len(rel.parts) > 3 or "derived" in rel.parts or not path.is_file():
                continue
            if not path.name.endswith(_SUFFIXES):
                continue
            st = path.stat()
            sniffed = _sniff(str(path), st.st_mtime_ns, st.st_size)
            if sniffed is not None:
                out.append(Recording(f"{name}/{rel.as_posix()}", str(path), sniffed[0], sniffed[1]))
    return out


def instrument_choices() -> list[tuple[str, str]]:
    known = [
        (k.key, f"{k.key} (tick {k.tick_size:g} {k.quote}, lot {k.lot_size:g} {k.base})") for k in instruments.KNOWN
    ]
    return [(SIMULATOR, "simulator (SIM-BTCUSDT)"), *known]


class StartSessionForm(forms.Form):
    name = forms.CharField(max_length=100, initial="paper")
    instrument = forms.ChoiceField()
    source = forms.ChoiceField(choices=SOURCES, initial=SIMULATOR, label="Data source")
    recording = forms.ChoiceField(required=False, help_text="with data source 'a recorded file'")
    preset = forms.ChoiceField(
        choices=[(p.name, p.label) for p in presets.PRESETS], initial="default", label="Parameter preset"
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=1, help_text="simulator and venue seed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recordings = {r.key: r for r in find_recordings()}
        self.fields["instrument"].choices = instrument_choices()
        self.fields["recording"].choices = [("", "—")] + [(r.key, r.label) for r in self.recordings.values()]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        instrument, source = data.get("instrument"), data.get("source")
        if instrument is None or source is None:
            return data  # the field's own error says what is wrong
        if source == SIMULATOR and instrument != SIMULATOR:
            self.add_error(
                "source",
                f"the simulator makes its own market (instrument 'simulator'); to trade {instrument} choose "
                "a replay of stored ticks or of a recorded file, or Binance live data",
            )
        if source != SIMULATOR and instrument == SIMULATOR:
            what = (
                "live data need a known Binance instrument"
                if source == LIVE_DATA
                else "a replay needs a known instrument"
            )
            self.add_error("instrument", f"{what}, not 'simulator'")
        elif source == LIVE_DATA and instruments.get(instrument).venue not in BINANCE_VENUES:
            self.add_error("instrument", f"Binance live data are for Binance instruments, not {instrument}")
        if source == "recording":
            rec = self.recordings.get(data.get("recording") or "")
            if rec is None:
                self.add_error("recording", "choose one of the recordings listed")
            elif instrument != SIMULATOR and rec.instrument != instrument:
                self.add_error("recording", f"this recording holds {rec.instrument}, not {instrument}")
        elif data.get("recording"):
            self.add_error("recording", "a recording is used only with data source 'a recorded file'")
        return data

    def replay(self) -> dict[str, Any] | None:
        """``replay`` for :func:`apps.control.services.create_replay_session` (None: the simulator)."""
        source = self.cleaned_data["source"]
        if source == "stored":
            return {"stored": True}
        if source == "recording":
            rec = self.recordings[self.cleaned_data["recording"]]
            return {"files": [rec.path], "format": rec.fmt}
        return None


def live_instrument_choices() -> list[tuple[str, str]]:
    """The Hyperliquid perps of the registry: what a live session may trade."""
    return [
        (k.key, f"{k.key} (tick {k.tick_size:g} {k.quote}, lot {k.lot_size:g} {k.base})")
        for k in instruments.KNOWN
        if k.venue == "hyperliquid"
    ]


class StartLiveSessionForm(forms.Form):
    """A LIVE session on Hyperliquid (admin only). ``confirm`` must be the coin itself (``BTC`` for
    ``hyperliquid:BTC``, case as the venue spells it): a deliberate second statement of what will be traded."""

    name = forms.CharField(max_length=100, initial="live")
    instrument = forms.ChoiceField(label="Hyperliquid perp")
    preset = forms.ChoiceField(
        choices=[(p.name, p.label) for p in presets.PRESETS], initial="conservative", label="Parameter preset"
    )
    confirm = forms.CharField(
        max_length=32,
        label="Confirm: type the coin",
        help_text="real orders on the venue: type the coin (e.g. BTC) to confirm",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["instrument"].choices = live_instrument_choices()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        instrument, confirm = data.get("instrument"), data.get("confirm")
        if instrument is not None and confirm is not None:
            coin = instruments.get(instrument).symbol
            if confirm.strip() != coin:
                self.add_error("confirm", f"type {coin} exactly to confirm live trading on {instrument}")
        try:
            credentials_from_env()  # only checked here; the loop reads them again, they are never kept
        except CredentialsError as exc:
            self.add_error(None, f"no Hyperliquid credentials configured: {exc}")
        return data
