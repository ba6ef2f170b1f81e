"""Finite-horizon GLFT optimal quotes on a bounded inventory grid (Guéant, Lehalle & Fernandez-Tapia 2013).

Model
-----
Mid follows ``dS̃ = σ dW`` in normalised price (fraction of the reference mid); our bid/ask at distance ``δ``
(fraction of mid) is hit at rate ``A·exp(−κ·δ)`` with fills of ``Δ`` base units; inventory is confined to
``q ∈ {−Q, −Q+Δ, …, Q}``; the objective is CARA utility with risk aversion γ on wealth counted in base units
valued at mid (units as in :mod:`apps.engine.quoting.pricing`). Counting inventory in lots ``n = q/Δ`` turns this into
GLFT's unit-lot model with lot price ``ΔS̃``, lot volatility ``Δσ`` and decay ``κ/Δ`` per lot-price distance.

GLFT's change of variables reduces the Hamilton–Jacobi–Bellman equation to a *linear* ODE system in the
time to horizon ``τ = T − t``:

    dv/dτ = −M v,   v(0) = 1,   i.e.   v(τ) = exp(−M τ) · 1,

with ``M`` symmetric tridiagonal on ``n ∈ {−N..N}`` (``N = Q/Δ``):

    M[n, n] = a·n²,            a = κ·γ·Δ·σ² / 2             (per second)
    M[n, n±1] = −e,            e = A·(1 + ξΔ/κ)^(−(1 + κ/(ξΔ)))   (per second)

and the optimal offsets (fractions of mid)

    bid_offset(τ, n) = (1/κ)·ln(v_n / v_{n+1}) + (1/(ξΔ))·ln(1 + ξΔ/κ)      for n < N
    ask_offset(τ, n) = (1/κ)·ln(v_n / v_{n−1}) + (1/(ξΔ))·ln(1 + ξΔ/κ)      for n > −N

(ξ = γ in GLFT 2013's CARA model; see :class:`GLFTParams` for ξ ≠ γ.)

No bid is quoted at ``q = +Q`` and no ask at ``q = −Q``: a fill there would break the inventory bound. Those
entries are NaN in the arrays and ``False`` in the ``*_quoted`` masks.

Numerics
--------
Only ratios of neighbouring ``v_n`` matter, and these can span hundreds of orders of magnitude between the
middle and the edge of the grid when γ is large. ``scipy.linalg.expm`` (Padé) and an eigendecomposition are
accurate only relative to the *largest* entry, so the small edge entries (exactly the ones that set the
quotes at large |q|) can lose all their digits. Here ``exp(−Mτ) = exp(−cτ)·exp(Bτ)`` with ``B = cI − M ≥ 0``
entrywise (``c = a·N²``); ``exp(B h)`` for a small step ``h`` is summed as a Taylor series of non-negative
matrices, and longer times come from squaring and matrix–vector products of non-negative matrices,
renormalising as we go. No subtraction ever happens, so every entry is accurate to a few ulps *relative to
itself*. The tests cross-check against ``scipy.linalg.expm`` where that is well conditioned.

Status
------
The quoter's ``glft_finite`` model (issue 16) quotes from :func:`glft_offsets_at` when the session has an end
time; ``glft`` uses the asymptotic closed form of :mod:`apps.engine.quoting.pricing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from apps.engine.validation import non_negative, positive

__all__ = [
    "GLFTParams",
    "GLFTRangeError",
    "GLFTSolution",
    "glft_matrix",
    "glft_offsets_at",
    "glft_stationary_offsets",
    "solve_glft",
]

# Taylor step size: h is chosen so that 4·max(B)·h <= 1/2. Then every entry of exp(Bh), including the tiny
# far-off-diagonal ones, is resolved to double precision by 2N + _TAYLOR_EXTRA_TERMS terms (the tail beyond
# the first non-zero term of an entry at distance d is bounded by sum_{m>M} 0.5^m/m!).
_TAYLOR_RATE = 0.125
_TAYLOR_EXTRA_TERMS = 30
# The stationary (τ → ∞) solution: keep squaring until log-ratios move less than this, at most this often.
_STATIONARY_TOL = 1e-13
_STATIONARY_MAX_SQUARINGS = 400
# Below this ratio to the largest entry a value-vector entry is (nearly) subnormal and has lost its digits.
_MIN_RELATIVE_V = 1e-290


class GLFTRangeError(ValueError):
    """The value function's dynamic range across the grid exceeds float64: no quotes rather than wrong ones."""


@dataclass(frozen=True, slots=True)
class GLFTParams:
    """Parameters of the finite-horizon GLFT problem (CARA model ξ = γ, or Guéant's ξ ≠ γ).

    With an exponential intensity the Hamiltonian is exponential in its argument for every ξ, so the same
    change of variables linearises the HJB equation (Guéant 2017): γ enters only ``a`` (the inventory penalty
    ``γσ²q²/2``) and ξ only ``e`` and the base half-spread ``(1/(ξΔ))·ln(1 + ξΔ/κ)``. The quoter holds ξ at the
    base γ₀ so that risk features, which act through γ, can only widen the quotes.

    Attributes
    ----------
    gamma : float
        Risk aversion γ > 0, per base unit valued at mid.
    sigma : float
        Log-price volatility σ ≥ 0 per √second.
    kappa : float
        Fill-intensity decay κ > 0 per unit fractional distance.
    A : float
        Fill intensity at zero distance, per second (> 0).
    order_size : float
        Δ > 0, base units per fill.
    max_inventory : float
        Q > 0, base units; must be a whole number of order sizes (Q/Δ an integer, at most 2000).
    xi : float or None
        ξ > 0, risk aversion of the spread term, per base unit valued at mid; None (default) = γ.
    """

    gamma: float
    sigma: float
    kappa: float
    A: float
    order_size: float = 1.0
    max_inventory: float = 10.0
    xi: float | None = None

    def validate(self) -> None:
        for name in ("gamma", "kappa", "A", "order_size", "max_inventory"):
            positive(name, getattr(self, name), "GLFTParams")
        if self.xi is not None:
            positive("xi", self.xi, "GLFTParams")
        non_negative("sigma", self.sigma, "GLFTParams")
        ratio = self.max_inventory / self.order_size
        if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio) or round(ratio) < 1:
            raise ValueError(
                f"max_inventory must be a positive whole multiple of order_size, got "
                f"max_inventory={self.max_inventory!r}, order_size={self.order_size!r}"
            )
        if round(ratio) > 2000:
            raise ValueError(f"max_inventory/order_size must be <= 2000 grid steps, got {round(ratio)}")

    @property
    def n_lots(self) -> int:
        """N = Q/Δ, the number of order sizes from flat to the inventory bound."""
        return round(self.max_inventory / self.order_size)

    @property
    def inventory(self) -> np.ndarray:
        """The inventory grid ``q = n·Δ`` for ``n = −N..N``, base units, ascending."""
        n = np.arange(-self.n_lots, self.n_lots + 1, dtype=float)
        return n * self.order_size

    @property
    def spread_gamma(self) -> float:
        """ξ, the spread term's risk aversion (γ unless set)."""
        return self.gamma if self.xi is None else self.xi

    @property
    def base_half_spread(self) -> float:
        """``(1/(ξΔ))·ln(1 + ξΔ/κ)``: the offset at the horizon and the risk-neutral part of every offset."""
        gd = self.spread_gamma * self.order_size
        return math.log1p(gd / self.kappa) / gd


@dataclass(frozen=True, slots=True)
class GLFTSolution:
    """Optimal GLFT offsets on a grid of times to horizon and inventories.

    Attributes
    ----------
    inventory : ndarray, shape (2N+1,)
        q in base units, ascending from −Q to +Q.
    tau_s : ndarray, shape (K,)
        Time to horizon in seconds, ascending (0 = at the horizon).
    bid_offset, ask_offset : ndarray, shape (K, 2N+1)
        Distances from mid as fractions (positive = away from mid). NaN where the side is not quoted.
    bid_quoted, ask_quoted : ndarray of bool, shape (2N+1,)
        False at q = +Q (bid) and q = −Q (ask): the boundary where that side must not be quoted.
    """

    inventory: np.ndarray
    tau_s: np.ndarray
    bid_offset: np.ndarray
    ask_offset: np.ndarray
    bid_quoted: np.ndarray
    ask_quoted: np.ndarray

    def index_of(self, q: float) -> int:
        """Index of inventory ``q`` (base units) on the grid; ValueError when it is not a grid point."""
        i = int(np.argmin(np.abs(self.inventory - q)))
        step = self.inventory[1] - self.inventory[0] if self.inventory.size > 1 else 1.0
        if abs(self.inventory[i] - q) > 1e-9 * max(1.0, abs(step)):
            raise ValueError(f"q={q!r} is not on the inventory grid (step {step!r}, bound {self.inventory[-1]!r})")
        return i


def glft_matrix(params: GLFTParams) -> tuple[float, float, np.ndarray]:
    """The constants ``a``, ``e`` (per second) and the (2N+1)×(2N+1) matrix ``M`` of the GLFT ODE.

    See the module docstring for the definitions; row/column ``i`` is inventory ``(i − N)·Δ``.
    """
    params.validate()
    gd = params.gamma * params.order_size
    a = 0.5 * params.kappa * gd * params.sigma**2
    # (1 + x)^(−(1 + 1/x)) with x = ξΔ/κ, evaluated in logs (x is often ~1e-4).
    x = params.spread_gamma * params.order_size / params.kappa
    e = params.A * math.exp(-(1.0 + 1.0 / x) * math.log1p(x))
    n = np.arange(-params.n_lots, params.n_lots + 1, dtype=float)
    m = np.diag(a * n * n)
    idx = np.arange(n.size - 1)
    m[idx, idx + 1] = -e
    m[idx + 1, idx] = -e
    return a, e, m


def _nonneg_generator(params: GLFTParams) -> np.ndarray:
    """``B = cI − M`` with ``c = max diag(M)``: entrywise non-negative, ``exp(−Mτ) ∝ exp(Bτ)``."""
    _, _, m = glft_matrix(params)
    c = float(np.max(np.diag(m)))
    b = c * np.eye(m.shape[0]) - m
    return np.maximum(b, 0.0)  # exact: diag is c − a n² ≥ 0, off-diagonals are e ≥ 0


def _expm_nonneg(b: np.ndarray, tau_s: float) -> np.ndarray:
    """``exp(B·τ)`` up to a positive scalar, for entrywise non-negative tridiagonal ``B``.

    Entrywise-relative accurate: a Taylor series of non-negative terms for a short step, then squaring.
    Entries far below the largest one may underflow to zero; they only ever feed sums in which they are
    negligible, and an underflow of the *value vector* is detected in :func:`_offsets_from_v`.
    """
    size = b.shape[0]
    bmax = float(np.max(b)) if size else 0.0
    if tau_s == 0.0 or bmax == 0.0:
        return np.eye(size)
    squarings = max(0, math.ceil(math.log2(tau_s * bmax / _TAYLOR_RATE)))
    h = tau_s / 2.0**squarings
    diag = np.diag(b) * h
    upper = np.diag(b, 1) * h  # B[j-1, j]
    lower = np.diag(b, -1) * h  # B[j+1, j]
    term = np.eye(size)
    total = np.eye(size)
    for k in range(1, size + _TAYLOR_EXTRA_TERMS):
        # term @ (B h) for tridiagonal B in O(size²): column j mixes columns j-1, j, j+1 of term.
        nxt = term * diag
        nxt[:, 1:] += term[:, :-1] * upper
        nxt[:, :-1] += term[:, 1:] * lower
        term = nxt / k
        total += term
    for _ in range(squarings):
        total = total @ total
        total /= np.max(total)  # only ratios matter; keeps the entries in range
    return total


def _offsets_from_v(params: GLFTParams, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (fractions) from a positive vector ``v`` (any positive scale); NaN at the boundary sides."""
    vmax = float(np.max(v))
    if not (np.all(np.isfinite(v)) and vmax > 0) or float(np.min(v)) < _MIN_RELATIVE_V * vmax:
        raise GLFTRangeError(
            "GLFT value function spans more than float64 range across the inventory grid "
            f"(min/max = {float(np.min(v)) / vmax if vmax > 0 else float('nan'):.3g}); use fewer grid steps "
            f"(max_inventory/order_size = {params.n_lots}) or a smaller gamma"
        )
    logv = np.log(v)
    base = params.base_half_spread
    bid = np.full(v.shape, np.nan)
    ask = np.full(v.shape, np.nan)
    bid[:-1] = (logv[:-1] - logv[1:]) / params.kappa + base
    ask[1:] = (logv[1:] - logv[:-1]) / params.kappa + base
    return bid, ask


def solve_glft(params: GLFTParams, horizon_s: float, n_steps: int) -> GLFTSolution:
    """Optimal bid/ask offsets for every inventory on the uniform grid ``τ = 0, h, …, horizon_s``.

    Parameters
    ----------
    params : GLFTParams
        Model parameters (validated here).
    horizon_s : float
        Largest time to horizon, seconds (> 0).
    n_steps : int
        Number of time steps (≥ 1); the grid has ``n_steps + 1`` points, ``h = horizon_s / n_steps``.

    Returns
    -------
    GLFTSolution
    """
    params.validate()
    if isinstance(horizon_s, bool) or not isinstance(horizon_s, (int, float)) or not math.isfinite(horizon_s):
        raise ValueError(f"horizon_s must be a finite number, got {horizon_s!r}")
    if horizon_s <= 0:
        raise ValueError(f"horizon_s must be > 0, got {horizon_s!r}")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    b = _nonneg_generator(params)
    step = _expm_nonneg(b, horizon_s / n_steps)
    size = b.shape[0]
    tau = np.linspace(0.0, float(horizon_s), n_steps + 1)
    bid = np.empty((n_steps + 1, size))
    ask = np.empty((n_steps + 1, size))
    v = np.ones(size)
    for k in range(n_steps + 1):
        bid[k], ask[k] = _offsets_from_v(params, v)
        v = step @ v
        v /= np.max(v)
    quoted_bid = np.ones(size, dtype=bool)
    quoted_bid[-1] = False
    quoted_ask = np.ones(size, dtype=bool)
    quoted_ask[0] = False
    return GLFTSolution(params.inventory, tau, bid, ask, quoted_bid, quoted_ask)


def glft_offsets_at(params: GLFTParams, tau_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask offsets (fractions; NaN where not quoted) for every inventory at one time to horizon."""
    params.validate()
    if isinstance(tau_s, bool) or not isinstance(tau_s, (int, float)) or not math.isfinite(tau_s) or tau_s < 0:
        raise ValueError(f"tau_s must be a finite number >= 0, got {tau_s!r}")
    b = _nonneg_generator(params)
    v = _expm_nonneg(b, float(tau_s)) @ np.ones(b.shape[0])
    return _offsets_from_v(params, v / np.max(v))


def glft_stationary_offsets(params: GLFTParams) -> tuple[np.ndarray, np.ndarray]:
    """The τ → ∞ limit of the offsets: ``v`` becomes the ground state of ``M`` (Perron vector of ``B``).

    Computed by repeated squaring of ``exp(B h)`` until the log-ratios settle; raises RuntimeError if they
    do not within the squaring budget (a degenerate spectrum, e.g. σ = 0 with a huge grid).
    """
    params.validate()
    b = _nonneg_generator(params)
    bmax = float(np.max(b))
    size = b.shape[0]
    p = _expm_nonneg(b, _TAYLOR_RATE / bmax) if bmax > 0 else np.eye(size)
    ones = np.ones(size)
    logv = np.log(p @ ones)
    for _ in range(_STATIONARY_MAX_SQUARINGS):
        p = p @ p
        p /= np.max(p)
        v = p @ ones
        new = np.log(v / np.max(v))
        if np.max(np.abs(new - logv)) < _STATIONARY_TOL:
            return _offsets_from_v(params, v / np.max(v))
        logv = new
    raise RuntimeError("GLFT stationary offsets did not converge; spectral gap too small for the squaring budget")
