"""Closed-form optimal-quote math: Avellaneda–Stoikov (2008) and the GLFT asymptotic approximation.

Units and the one convention that makes them consistent
-------------------------------------------------------
Inside the engine a distance from mid is a *fraction of mid* (``0.0005`` = 5 bps) and σ is the volatility of
the log price per √second. We therefore write the market maker's problem in *normalised* units:

* price  ``S̃ = S / S₀``  (dimensionless, ≈ 1; a move of 0.0001 is 1 bp), so ``dS̃ = σ dW``;
* wealth ``W̃ = W / S₀``  (quote currency divided by the mid, i.e. wealth counted in base-asset units valued at
  mid); a fill of size ``Δ`` base units at distance ``δ`` earns ``Δ·δ`` of it;
* ``q`` and the order size ``Δ`` in base-asset units;
* ``γ`` (and ``ξ``) the CARA coefficient on ``W̃``: utility ``−exp(−γ·W̃)``. Its unit is 1 / (one base unit
  valued at mid). ``γ = 1`` means a loss of one base unit's worth of value costs one e-fold of utility.
* κ per unit fractional distance (κ ≈ 3333 ⇔ fills concentrated ~3 bps from mid); ``A`` fills per second at
  zero distance; ``T`` (``horizon_s``) in seconds.

With these choices every formula below is dimensionally consistent with no hidden scale factor:
``γ/κ`` is dimensionless (for one base unit per fill), the reservation skew ``q·γ·σ²·T`` is a fraction of mid,
and the half-spread ``(1/γ)·ln(1+γ/κ)`` is a fraction of mid. The Avellaneda–Stoikov functions assume unit
fills of one base unit (their original "one share per order" setting); the GLFT functions take the order
size ``Δ`` explicitly. Changing the size unit (e.g. BTC → satoshi) rescales γ by the same factor: γ is
*per base unit*, not a universal number. A practical consequence (seed 003's "skew magnitude" lesson): with
σ ≈ 1e-4/√s and T = 60 s, a 1-unit position with γ = 0.5 skews by only 3e-7 (0.003 bps); a visible skew
needs a γ of order 1e2–1e3 per base unit, while the half-spread barely moves because γ/κ stays ≪ 1.

Signs: ``bid_offset`` and ``ask_offset`` are distances *away from mid* (positive = bid below mid / ask above
mid); the quoted prices are ``mid·(1 − bid_offset)`` and ``mid·(1 + ask_offset)``. Nothing here clamps: a large
inventory can make one offset negative (a quote through mid). Whether to quote it is the quoter's decision
and must be recorded as such.

References
----------
Avellaneda, M. & Stoikov, S. (2008). High-frequency trading in a limit order book. Quantitative Finance 8(3).
Guéant, O., Lehalle, C.-A. & Fernandez-Tapia, J. (2013). Dealing with the inventory risk: a solution to the
market making problem. Mathematics and Financial Economics 7(4).
Guéant, O. (2017). Optimal market making. Applied Mathematical Finance 24(2).
"""

from __future__ import annotations

import math

from apps.engine.validation import finite, non_negative, positive

__all__ = [
    "avellaneda_stoikov_offsets",
    "avellaneda_stoikov_quotes",
    "glft_coefficients",
    "glft_quotes",
    "half_spread",
    "inventory_skew",
    "reservation_price",
]


# --- validation helpers (ValueError naming the argument and the bad value) ----------------------


def _log1p_ratio_over(x: float, k: float) -> float:
    """``(1/x)·ln(1 + x/k)``, accurate when ``x/k`` is tiny (then ≈ 1/k)."""
    return math.log1p(x / k) / x


# --- Avellaneda–Stoikov -----------------------------------------------------------------------


def half_spread(gamma: float, kappa: float) -> float:
    """Optimal half-spread ``δ* = (1/γ)·ln(1 + γ/κ)`` as a fraction of mid.

    Parameters
    ----------
    gamma : float
        Risk aversion γ > 0, per base unit valued at mid (see module docstring).
    kappa : float
        Fill-intensity decay κ > 0 per unit fractional distance, from ``λ(δ) = A·exp(−κ·δ)``.

    Returns
    -------
    float
        δ*, a fraction of mid. It lies in ``(1/κ − γ/(2κ²), 1/κ)`` and tends to ``1/κ`` as γ → 0.

    Examples
    --------
    >>> round(half_spread(0.5, 3333.0) * 1e4, 3)  # bps
    3.0
    """
    g = positive("gamma", gamma)
    k = positive("kappa", kappa)
    return _log1p_ratio_over(g, k)


def inventory_skew(q: float, gamma: float, sigma: float, horizon_s: float) -> float:
    """Reservation-price shift ``q·γ·σ²·T`` as a fraction of mid (positive when long: quotes move down).

    Parameters
    ----------
    q : float
        Signed inventory in base units (positive = long).
    gamma : float
        Risk aversion γ > 0 per base unit valued at mid.
    sigma : float
        Log-price volatility σ ≥ 0 per √second.
    horizon_s : float
        Time to horizon T ≥ 0 in seconds.
    """
    qq = finite("q", q)
    g = positive("gamma", gamma)
    s = non_negative("sigma", sigma)
    t = non_negative("horizon_s", horizon_s)
    return qq * g * s * s * t


def reservation_price(mid: float, q: float, gamma: float, sigma: float, horizon_s: float) -> float:
    """Avellaneda–Stoikov indifference price ``r = s·(1 − q·γ·σ²·T)`` in quote currency.

    The textbook ``r = s − q·γ·σ²·T`` is written in price units; in this engine's fractional units the
    shift ``q·γ·σ²·T`` is a fraction of mid (see module docstring), hence the multiplication by ``s``.

    Parameters
    ----------
    mid : float
        Mid price s > 0, quote currency.
    q, gamma, sigma, horizon_s
        As in :func:`inventory_skew`.
    """
    m = positive("mid", mid)
    return m * (1.0 - inventory_skew(q, gamma, sigma, horizon_s))


def avellaneda_stoikov_offsets(
    q: float, gamma: float, sigma: float, kappa: float, horizon_s: float
) -> tuple[float, float]:
    """Finite-horizon Avellaneda–Stoikov offsets ``(bid_offset, ask_offset)`` as fractions of mid.

    Total spread ``γσ²T + (2/γ)·ln(1 + γ/κ)`` centred on the reservation price, so

    ``bid_offset = q·γ·σ²·T + γσ²T/2 + (1/γ)·ln(1+γ/κ)``
    ``ask_offset = −q·γ·σ²·T + γσ²T/2 + (1/γ)·ln(1+γ/κ)``

    Orders are one base unit each (AS's setting); symbols and units as in :func:`inventory_skew`.
    """
    skew = inventory_skew(q, gamma, sigma, horizon_s)
    half_total = 0.5 * gamma * sigma * sigma * horizon_s + half_spread(gamma, kappa)
    return skew + half_total, -skew + half_total


def avellaneda_stoikov_quotes(
    mid: float, q: float, gamma: float, sigma: float, kappa: float, horizon_s: float
) -> tuple[float, float]:
    """Finite-horizon Avellaneda–Stoikov ``(bid_px, ask_px)`` in quote currency (unrounded).

    ``bid_px = r − s·spread/2`` and ``ask_px = r + s·spread/2`` with ``r`` from :func:`reservation_price` and
    ``spread = γσ²T + (2/γ)·ln(1 + γ/κ)`` a fraction of mid. No clamping: a large |q| can put one quote
    through the mid.
    """
    m = positive("mid", mid)
    bid_off, ask_off = avellaneda_stoikov_offsets(q, gamma, sigma, kappa, horizon_s)
    return m * (1.0 - bid_off), m * (1.0 + ask_off)


# --- GLFT asymptotic (infinite-horizon) approximation ------------------------------------------


def glft_coefficients(gamma: float, xi: float, delta: float, A: float, kappa: float) -> tuple[float, float]:
    """Coefficients ``(c1, c2)`` of the GLFT closed-form approximation (Guéant 2017, eq. for Δ-sized orders).

    ``c1 = (1/(ξΔ))·ln(1 + ξΔ/κ)``
    ``c2 = sqrt( γ / (2·A·Δ·κ) · (1 + ξΔ/κ)^(κ/(ξΔ) + 1) )``

    so that, with σ the log-price volatility,

    ``bid_offset(q) ≈ c1 + σ·c2·(q + Δ/2)``,  ``ask_offset(q) ≈ c1 − σ·c2·(q − Δ/2)``,

    i.e. half-spread ``c1 + (Δ/2)·σ·c2`` and skew ``σ·c2`` per base unit of inventory. ``ξ = γ`` is GLFT 2013's
    model (the finite-horizon solver in :mod:`apps.engine.quoting.glft`); ``ξ`` is the risk aversion applied to the
    spread term in Guéant's more general objective.

    Parameters
    ----------
    gamma : float
        Risk aversion γ > 0 on inventory, per base unit valued at mid.
    xi : float
        Risk aversion ξ > 0 in the spread term (ξ = γ for the CARA model).
    delta : float
        Order size Δ > 0, base units.
    A : float
        Fill intensity at zero distance, per second (> 0).
    kappa : float
        Fill-intensity decay κ > 0 per unit fractional distance.

    Returns
    -------
    (c1, c2) : tuple of float
        c1 a fraction of mid; c2 in (fraction of mid) / (base unit · σ), i.e. √s per base unit.
    """
    g = positive("gamma", gamma)
    x = positive("xi", xi)
    d = positive("delta", delta)
    a = positive("A", A)
    k = positive("kappa", kappa)
    xd = x * d
    c1 = _log1p_ratio_over(xd, k)
    # (1 + ξΔ/κ)^(κ/(ξΔ)+1) → e as ξΔ/κ → 0; evaluate in logs to stay accurate there.
    log_pow = (k / xd + 1.0) * math.log1p(xd / k)
    c2 = math.sqrt(g / (2.0 * a * d * k) * math.exp(log_pow))
    return c1, c2


def glft_quotes(
    mid: float,
    q: float,
    gamma: float,
    sigma: float,
    kappa: float,
    A: float,
    delta: float = 1.0,
    xi: float | None = None,
) -> tuple[float, float]:
    """GLFT asymptotic ``(bid_offset, ask_offset)`` as fractions of mid (see :func:`glft_coefficients`).

    Parameters
    ----------
    mid : float
        Mid price (> 0), quote currency. Only validated: the offsets are fractions, and the prices are
        ``mid·(1 − bid_offset)`` and ``mid·(1 + ask_offset)``.
    q : float
        Signed inventory, base units.
    gamma, kappa, A, delta
        As in :func:`glft_coefficients`.
    sigma : float
        Log-price volatility σ ≥ 0 per √second.
    xi : float, optional
        Spread-term risk aversion; defaults to ``gamma``.

    Returns
    -------
    (bid_offset, ask_offset) : tuple of float
        Distances from mid as fractions (positive = away from mid). Not clamped.
    """
    positive("mid", mid)
    qq = finite("q", q)
    s = non_negative("sigma", sigma)
    c1, c2 = glft_coefficients(gamma, gamma if xi is None else xi, delta, A, kappa)
    half = 0.5 * float(delta)
    return c1 + s * c2 * (qq + half), c1 - s * c2 * (qq - half)
