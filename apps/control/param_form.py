"""The parameter form, generated from the engine's parameter dataclasses.

Each field of the session's editable sections (``strategy``: :class:`~apps.engine.core.StrategyParams` with the
quoter's :class:`~apps.engine.quoting.quoter.QuoterParams` flattened; ``risk``: each rule's params dataclass in
:mod:`apps.engine.risk.rules`, plus ``capital_quote``) becomes a :class:`FormField` with

* its help text: the field's entry in the dataclass's numpydoc ``Attributes`` section (the one place the engine
  documents it);
* its bounds: found by asking the dataclass's own ``validate()`` about a few probe values and keeping what it
  says a value "must be", so the form shows the engine's rule and never a copy of it;
* its unit: the one table below (:data:`UNITS`), or the unit in the name (``_s``, ``_bps``, ...), as the
  architecture's naming rule has it;
* whether it applies to a running session (:mod:`apps.control.params`).

Sections the loop builds once (sim, venue, feed, replay) are not on the form; the page shows them read-only.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import math
import re
from dataclasses import dataclass
from typing import Any

from apps.control.params import ESTIMATORS_WHY
from apps.engine.core import ESTIMATOR_FIELDS, FLAT_QUOTER_NAMES, RISK_AVERSION_FIELDS, StrategyParams
from apps.engine.quoting.quoter import QuoterParams
from apps.engine.quoting.risk_aversion import RiskAversionParams
from apps.engine.risk.rules import RuleAction
from apps.engine.risk.session import OPTIONAL_RULES, RULES, build_risk_engine

# Units the name does not carry. Keys are the session's own names (strategy's flat names, risk fields).
UNITS: dict[str, str] = {
    "strategy.gamma": "1/base unit",
    "strategy.beta_direction_confidence": "nats",
    "strategy.max_inventory": "base units",
    "strategy.order_size": "base units",
    "strategy.levels": "levels per side",
    "strategy.size_growth": "× per level",
    "strategy.requote_ticks": "ticks",
    "strategy.modify_orders": "yes/no",
    "strategy.fill_cost_in_spread": "yes/no",
    "strategy.fill_cost_by_depth": "yes/no",
    "strategy.skew_cap_by_fill_cost": "yes/no",
    "strategy.taker_trigger_ratio": "× Q_max",
    "strategy.skew_flag_ratio": "× Q_max",
    "strategy.kappa_min_volume": "base units",
    "strategy.sigma_min_buckets": "buckets",
    "strategy.loss_budget": "quote ccy",
    "strategy.session_end_ns": "ns since epoch (0 = none)",
    "strategy.kappa_prior": "per unit fractional distance",
    "strategy.drift_obs_var_trade_flow": "1/s²",
    "strategy.drift_obs_var_momentum": "1/s²",
    "strategy.drift_obs_var_microprice": "1/s²",
    "strategy.hawkes_prior_mu_per_s": "1/s",
    "strategy.hawkes_prior_alpha_per_s": "1/s",
    "strategy.hawkes_prior_beta_per_s": "1/s",
    **{f"strategy.risk_aversion.{name}": "nats per unit feature" for name in RISK_AVERSION_FIELDS},
    "risk.capital_quote": "quote ccy",
    "risk.position_limit.max_position": "base units",
    "risk.reject_rate.max_reject_ratio": "fraction",
    "risk.reject_rate.min_orders": "orders",
    "risk.cancel_rate.max_cancels": "cancels per window",
    "risk.message_rate.max_messages": "messages per window",
    "risk.margin.max_margin_use": "fraction",
    "risk.skew_alarm.min_position_ratio": "× position limit",
}
SUFFIX_UNITS = (
    ("_bps", "bps"),
    ("_nats", "nats"),
    ("_ms", "ms"),
    ("_ns", "ns"),
    ("_s", "s"),
    ("_quote", "quote ccy"),
    ("_frac", "fraction"),
    ("action", "rule action"),
)
CAPITAL_HELP = (
    "Capital the session's equity is counted from, quote currency: equity = capital + P&L, the drawdown rule's "
    "peak starts there. Default 10 000."
)
_PROBES: tuple[Any, ...] = (-1, 0, 0.5, 1.5)


@dataclass(frozen=True)
class FormField:
    path: str  # dotted, as apps.control.params takes it: "strategy.gamma", "risk.drawdown.max_drawdown_frac"
    group: str  # "strategy", "strategy (estimators)", "risk", "risk.drawdown", ...
    name: str
    kind: str  # "float" | "int" | "bool" | "choice"
    unit: str
    help: str
    bounds: str  # what the engine says a value must be ("> 0", "an integer >= 1", ...); "" = any finite number
    live: bool  # applies to a running session at its next step
    default: Any
    choices: tuple[str, ...] = ()

    @property
    def html_min(self) -> str:
        m = re.match(r"(?:> |>= |in [(\[]|an integer >= |an int >= )(-?[\d.]+)", self.bounds)
        return m[1] if m else ""

    @property
    def html_max(self) -> str:
        m = re.search(r", ([\d.]+)[\])]", self.bounds)
        return m[1] if m else ""

    @property
    def step(self) -> str:
        return "1" if self.kind == "int" else "any"


def _attribute_docs(cls: type) -> dict[str, str]:
    """``name -> text`` from a numpydoc ``Attributes`` section (``a, b : float`` lines share their text)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    lines = doc.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes") + 2
    except StopIteration:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []

    def flush() -> None:
        for n in names:
            out[n] = " ".join(text).strip()

    for line in lines[start:]:
        m = re.match(r"^([A-Za-z_][\w, ]*) : (.+)$", line)
        if m:
            flush()
            names, text = [n.strip() for n in m[1].split(",")], []
            if m[2].strip() not in ("float", "int", "bool") and not m[2].startswith(("RuleAction", "tuple")):
                text.append(m[2].strip())  # ``kappa, sigma, ... : params of each estimator.``
        elif line.startswith((" ", "\t")):
            text.append(line.strip())
        elif line.strip():
            break  # the next section
    flush()
    return out


def _kind(default: Any) -> str | None:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, enum.Enum):
        return "choice"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return None  # tuples of names: not on the form (set them through the JSON API)


def _unit(path: str, kind: str) -> str:
    if path in UNITS:
        return UNITS[path]
    name = path.rsplit(".", 1)[1]
    for suffix, unit in SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    return "yes/no" if kind == "bool" else ""


def _bounds(check: Any, name: str) -> str:
    """What ``check(value)`` (an engine validation) says ``name`` must be, from a few probe values."""
    said: list[str] = []
    for probe in _PROBES:
        try:
            check(probe)
        except (TypeError, ValueError) as exc:
            m = re.search(rf"\b{re.escape(name)}:? (?:must be|need) ([^,]+(?:, [\d.]+[\])])?)", str(exc))
            if m and m[1] not in said:
                said.append(m[1])
    if len(said) > 1 and "> 0" in said and any(s.startswith("in (0") for s in said):
        said.remove("> 0")
    return " and ".join(said)


def _strategy_fields() -> list[FormField]:
    """The quoting fields, the γ model's βs, then the estimators' (set before start): one block each on the page."""
    quoter_docs, own_docs = _attribute_docs(QuoterParams), _attribute_docs(StrategyParams)
    defaults = StrategyParams().as_dict()
    betas = defaults.pop("risk_aversion")
    out = []
    for flat in sorted(defaults, key=lambda name: name in ESTIMATOR_FIELDS):  # stable: live ones, then estimators'
        default = defaults[flat]
        kind = _kind(default)
        if kind is None:
            continue
        own = flat not in FLAT_QUOTER_NAMES
        help_text = own_docs.get(flat, "") if own else quoter_docs.get(FLAT_QUOTER_NAMES[flat], "")
        live = flat not in ESTIMATOR_FIELDS
        bounds = _bounds(lambda v, f=flat: StrategyParams.from_dict({f: v}), flat)
        path = f"strategy.{flat}"
        group = "strategy" if live else "strategy (estimators)"
        if not live:
            help_text = f"{help_text} Set before the session starts: {ESTIMATORS_WHY}."
        if not live and out[-1].live:
            out.extend(_beta_fields(betas))  # after the last live field
        out.append(FormField(path, group, flat, kind, _unit(path, kind), help_text, bounds, live, default))
    return out


def _beta_fields(defaults: dict[str, float]) -> list[FormField]:
    """``strategy.risk_aversion.beta_<feature>``: live, any finite number (0 switches the feature off)."""
    docs = _attribute_docs(RiskAversionParams)
    out = []
    for name in RISK_AVERSION_FIELDS:
        path = f"strategy.risk_aversion.{name}"
        bounds = _bounds(lambda v, n=name: StrategyParams.from_dict({"risk_aversion": {n: v}}), name)
        text = f"γ model: log γ = log γ₀ + Σ βᵢxᵢ. {docs.get(name, '')} 0 switches the feature off."
        out.append(FormField(path, "strategy", name, "float", _unit(path, "float"), text, bounds, True, defaults[name]))
    return out


def _risk_fields() -> list[FormField]:
    engine, capital = build_risk_engine({}, StrategyParams().max_inventory)
    in_force = {r.kind: r.params for r in engine.rules}
    cap_bounds = _bounds(lambda v: build_risk_engine({"capital_quote": v}, 0.05), "capital_quote")
    out = [
        FormField(
            "risk.capital_quote",
            "risk",
            "capital_quote",
            "float",
            UNITS["risk.capital_quote"],
            CAPITAL_HELP,
            cap_bounds,
            True,
            capital,
        )
    ]
    for cls in (*RULES, *OPTIONAL_RULES):
        base = in_force.get(cls.kind) or cls().params
        docs = _attribute_docs(type(base))
        summary = inspect.cleandoc(type(base).__doc__ or "").split("\n")[0]
        for f in dataclasses.fields(base):
            default = getattr(base, f.name)
            kind = _kind(default)
            if kind is None:
                continue
            path = f"risk.{cls.kind}.{f.name}"

            def check(v: Any, params: Any = base, name: str = f.name) -> None:
                dataclasses.replace(params, **{name: v}).validate()

            choices = tuple(a.value for a in RuleAction) if kind == "choice" else ()
            bounds = f"one of {', '.join(choices)}" if choices else _bounds(check, f.name)
            text = docs.get(f.name, "")
            if cls in OPTIONAL_RULES:
                text = f"{text} (The {cls.kind} rule runs only when one of its fields is set.)"
            value = default.value if isinstance(default, enum.Enum) else default
            out.append(
                FormField(path, f"risk.{cls.kind}", f.name, kind, _unit(path, kind), text, bounds, True, value, choices)
            )
            if summary and f is dataclasses.fields(base)[0]:
                out[-1] = dataclasses.replace(out[-1], help=f"{summary} {out[-1].help}".strip())
    return out


@functools.cache
def form_fields() -> tuple[FormField, ...]:
    """Every field of the form, in page order."""
    return (*_strategy_fields(), *_risk_fields())


def display(value: Any) -> str:
    """A value as the form shows it (``inf`` and ``nan`` as words; JSON stores them as strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


class FormError(ValueError):
    """A submitted value that is not of its field's type; the message names the field."""


def parse(field: FormField, raw: str) -> Any:
    """A submitted string as the JSON value the service takes; ``""`` means the engine's default (``None``)."""
    raw = raw.strip()
    if raw == "":
        return None
    if field.kind == "bool":
        if raw.lower() in ("yes", "true", "on", "1"):
            return True
        if raw.lower() in ("no", "false", "off", "0"):
            return False
        raise FormError(f"{field.path}: must be yes or no, got {raw!r}")
    if field.kind == "choice":
        if raw not in field.choices:
            raise FormError(f"{field.path}: must be one of {', '.join(field.choices)}, got {raw!r}")
        return raw
    try:
        number = float(raw)
    except ValueError:
        raise FormError(
            f"{field.path}: must be a number{f' ({field.unit})' if field.unit else ''}, got {raw!r}"
        ) from None
    if not math.isfinite(number):
        raise FormError(f"{field.path}: must be a finite number, got {raw!r} (leave it empty for the default)")
    if field.kind == "int":
        if not number.is_integer():
            raise FormError(f"{field.path}: must be a whole number, got {raw!r}")
        return int(number)
    return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number


def submitted_changes(post: Any, in_force: dict[str, Any], overridden: set[str]) -> dict[str, Any]:
    """The form's fields whose submitted value differs from the value in force (a blank one that is overridden
    means "back to the default"). Raises FormError naming the first field that does not parse."""
    changes: dict[str, Any] = {}
    for field in form_fields():
        if field.path not in post:
            continue
        shown = in_force.get(field.path, field.default)  # what the form rendered (an optional rule's defaults)
        if post[field.path].strip() == display(shown) != "":
            continue  # sent back as the form showed it (a default of inf included): unchanged
        value = parse(field, post[field.path])
        if value is None:
            if field.path in overridden:
                changes[field.path] = None
        elif value != shown:
            changes[field.path] = value
    return changes


def overridden_paths(params: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths set explicitly in a params JSON (the rest are the engine's defaults)."""
    out: set[str] = set()
    for key, value in (params or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= overridden_paths(value, f"{path}.")
        else:
            out.add(path)
    return out
