"""Plain words for the reasons the quoter and the strategy core attach to a decision.

The engine's reasons are exact but written for engineers ("skew_too_small: |q|=0.015 > 0.1·Q_max …"). The live
page shows the sentence from this table and keeps the raw reason for the hover text, so nothing is hidden. The
patterns follow the reasons emitted in ``apps/engine/quoting/quoter.py``, ``apps/engine/quoting/prediction.py`` and
``apps/engine/core.py`` (estimator states); a reason no pattern knows is shown as it is, code ``other``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Wording:
    code: str
    pattern: re.Pattern[str]
    text: str  # may use the pattern's named groups


def _w(code: str, pattern: str, text: str) -> Wording:
    return Wording(code, re.compile(pattern), text)


_SIDE = {"bid": "buy", "ask": "sell"}
_ESTIMATOR = {"kappa": "κ (fill-intensity decay)", "sigma": "σ (volatility)"}
_STATE = {
    "warming": "is still warming up (not enough data yet)",
    "stale": "is stale (no recent input)",
    "failed": "failed to fit",
}

WORDINGS: tuple[Wording, ...] = (
    _w("estimators_not_usable", r"^estimators not usable", "Not quoting: κ or σ is not usable yet."),
    _w(
        "estimator_state",
        r"^(?P<name>kappa|sigma) (?P<state>warming|stale|failed)\b",
        "Not quoting: {name_words} {state_words}.",
    ),
    _w(
        "gamma_bound_binding",
        r"^gamma_bound_binding",
        "Risk aversion γ hit its bound: the model wanted more, the bound compressed it.",
    ),
    _w(
        "microprice_used",
        r"^microprice usable",
        "Using the learned microprice for skew (instead of the imbalance and flow rules of thumb).",
    ),
    _w("drift_unusable", r"^drift not usable", "No trend estimate yet: the drift term is zero."),
    _w(
        "skew_too_small",
        r"^skew_too_small",
        "Warning: we hold a sizeable position but the quotes are barely skewed to reduce it.",
    ),
    _w(
        "level_no_room",
        r"^no (?P<side>bid|ask) at L(?P<level>\d+): a fill would take",
        "No {side_words} quote at level {level}: a fill would push inventory past its limit.",
    ),
    _w(
        "level_negative_epnl",
        r"^(?P<side>bid|ask) L(?P<level>\d+) dropped: expected P&L",
        "{side_words_cap} level {level} not quoted: expected profit after adverse selection and fees is negative.",
    ),
    _w(
        "level_bad_price",
        r"^(?P<side>bid|ask) L(?P<level>\d+) dropped: price",
        "{side_words_cap} level {level} not quoted: the model price is not positive.",
    ),
    _w(
        "post_only_clamp",
        r"^(?P<side>bid|ask) would cross the",
        "Our {side_words} would have crossed the market: placed one tick back (post-only).",
    ),
    _w(
        "emergency_taker",
        r"^emergency taker",
        "Inventory near its limit: sending a market-taking order to reduce it.",
    ),
    _w("variance_bound", r"^variance bound binding", "Prediction market: the variance bound is binding."),
    _w(
        "price_bound",
        r"^no (?P<side>bid|ask): model (?:bid|ask) .* (?:below|above) (?:min|max)_price",
        "No {side_words} quote: the model price is outside the allowed price range.",
    ),
)


def explain(reason: str) -> dict[str, str]:
    """``{"code", "text", "raw"}`` for one reason string: the plain sentence, and the raw reason for hover."""
    for w in WORDINGS:
        m = w.pattern.search(reason)
        if m is None:
            continue
        g = m.groupdict()
        words = {
            "name_words": _ESTIMATOR.get(g.get("name") or "", g.get("name") or ""),
            "state_words": _STATE.get(g.get("state") or "", g.get("state") or ""),
            "side_words": _SIDE.get(g.get("side") or "", ""),
            "side_words_cap": _SIDE.get(g.get("side") or "", "").capitalize(),
            "level": str(int(g["level"]) + 1) if g.get("level") is not None else "",
        }
        return {"code": w.code, "text": w.text.format(**words), "raw": reason}
    return {"code": "other", "text": reason, "raw": reason}


# Why quotes are pulled, by the driver's mode sources (see EngineLoop.set_mode) and the modes they hold.
MODE_SOURCES = {
    "control": "operator / session status",
    "feed": "market-data feed",
    "db": "database connection",
    "risk": "risk rules (pull quotes)",
    "latched": "a risk rule that halted or reduced",
}
MODE_WORDS = {
    "running": "quoting normally",
    "reducing": "reduce only: orders that would grow |inventory| are not sent",
    "paused": "quotes pulled: nothing is sent",
    "halted": "halted: every order cancelled, nothing is sent",
}


def explain_all(reasons: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    return [explain(r) for r in reasons]


__all__ = ["MODE_SOURCES", "MODE_WORDS", "WORDINGS", "explain", "explain_all"]
