"""Fit a distribution to lock-window lengths, so the tail can be read past the data.

A blocked time (an episode's lock window) is the time from the first failure until the operation would first have
succeeded. Windows still open when the trace ended are *right-censored*: we only know they
lasted at least until the trace's end. Three candidates are fitted by maximum likelihood
with censoring, using numpy and the standard library only:

- lognormal: EM on the logs (the E-step uses the truncated-normal moments);
- Weibull: the profile-likelihood equation for the shape, solved by bisection;
- exponential: closed form (events / total exposure).

Goodness of fit is the Kolmogorov–Smirnov distance between the fitted CDF and the
Kaplan–Meier estimate (the empirical CDF when nothing is censored). The best candidate is
the one with the smallest distance. The KS p-value is the asymptotic Kolmogorov one; with
parameters estimated from the same data it is optimistic (Lilliefors), so read it as a
rough guide, not a test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = ["TailModel", "fit_tail", "kaplan_meier"]

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_erfc = np.vectorize(math.erfc, otypes=[np.float64])
_STD = NormalDist()


def _norm_sf(z: np.ndarray) -> np.ndarray:
    """Standard normal survival function 1 − Φ(z), accurate in the upper tail."""
    out: np.ndarray = 0.5 * _erfc(np.asarray(z, dtype=np.float64) / _SQRT2)
    return out


def _norm_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * np.asarray(z) ** 2 - _LOG_SQRT_2PI)


@dataclass(frozen=True)
class TailModel:
    """A fitted window-length distribution, with its fit quality and the quantiles that matter.

    ``parameters`` are ``(name, value)`` pairs: lognormal ``mu``, ``sigma`` (of ln ms),
    Weibull ``shape``, ``scale_ms``, exponential ``mean_ms``. ``alternatives`` lists every
    candidate as ``(distribution, ks_statistic)``, best first.
    """

    distribution: str
    parameters: tuple[tuple[str, float], ...]
    ks_statistic: float
    ks_pvalue: float
    log_likelihood: float
    n: int
    n_censored: int
    n_zero: int
    target: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    budget_for_target_ms: float
    alternatives: tuple[tuple[str, float], ...] = ()

    def cdf(self, x: float | np.ndarray) -> np.ndarray:
        """P(window ≤ x) under the fitted model."""
        return _CDF[self.distribution](dict(self.parameters), np.asarray(x, dtype=np.float64))

    def quantile(self, p: float) -> float:
        """The window length that a fraction ``p`` of windows do not exceed."""
        return float(_QUANTILE[self.distribution](dict(self.parameters), p))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        return {
            "distribution": self.distribution,
            "parameters": dict(self.parameters),
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "log_likelihood": self.log_likelihood,
            "n": self.n,
            "n_censored": self.n_censored,
            "n_zero": self.n_zero,
            "target": self.target,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "budget_for_target_ms": self.budget_for_target_ms,
            "alternatives": [{"distribution": d, "ks_statistic": k} for d, k in self.alternatives],
            "method": "maximum likelihood with right-censoring; KS against Kaplan-Meier",
        }


MAX_MODEL_TARGET = 0.9999


# --- distributions --------------------------------------------------------------------


def _ln_cdf(p: dict[str, float], x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        z = (np.log(np.maximum(x, 0.0)) - p["mu"]) / p["sigma"]
    return 1.0 - _norm_sf(z)


def _ln_quantile(p: dict[str, float], q: float) -> float:
    return math.exp(p["mu"] + p["sigma"] * _STD.inv_cdf(q))


def _wb_cdf(p: dict[str, float], x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 - np.exp(-((np.maximum(x, 0.0) / p["scale_ms"]) ** p["shape"]))
    return out


def _wb_quantile(p: dict[str, float], q: float) -> float:
    return float(p["scale_ms"] * (-math.log1p(-q)) ** (1.0 / p["shape"]))


def _ex_cdf(p: dict[str, float], x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 - np.exp(-np.maximum(x, 0.0) / p["mean_ms"])
    return out


def _ex_quantile(p: dict[str, float], q: float) -> float:
    return -p["mean_ms"] * math.log1p(-q)


_CDF = {"lognormal": _ln_cdf, "weibull": _wb_cdf, "exponential": _ex_cdf}
_QUANTILE = {"lognormal": _ln_quantile, "weibull": _wb_quantile, "exponential": _ex_quantile}


def _fit_lognormal(t: np.ndarray, cens: np.ndarray) -> tuple[dict[str, float], float]:
    """EM for a normal on ln t with right-censoring; returns parameters and log-likelihood."""
    y = np.log(t)
    yo, yc = y[~cens], y[cens]
    mu = float(yo.mean())
    sigma = float(max(yo.std(), 1e-3)) if len(yo) > 1 else 1.0
    n = len(y)
    for _ in range(500):
        if len(yc):
            a = (yc - mu) / sigma
            sf = np.maximum(_norm_sf(a), 1e-300)
            lam = _norm_pdf(a) / sf
            e1 = mu + sigma * lam
            e2 = mu**2 + sigma**2 + sigma * (yc + mu) * lam
        else:
            e1 = e2 = np.zeros(0)
        mu_new = (yo.sum() + e1.sum()) / n
        var = (np.sum(yo**2) + e2.sum()) / n - mu_new**2
        sigma_new = math.sqrt(max(var, 1e-12))
        done = abs(mu_new - mu) < 1e-10 and abs(sigma_new - sigma) < 1e-10
        mu, sigma = float(mu_new), float(max(sigma_new, 1e-6))
        if done:
            break
    z = (y - mu) / sigma
    ll = float(
        np.sum(-yo - math.log(sigma) - _LOG_SQRT_2PI - 0.5 * z[~cens] ** 2)
        + np.sum(np.log(np.maximum(_norm_sf(z[cens]), 1e-300)))
    )
    return {"mu": mu, "sigma": sigma}, ll


def _fit_weibull(t: np.ndarray, cens: np.ndarray) -> tuple[dict[str, float], float]:
    """Weibull MLE with censoring: bisection on the shape's profile equation."""
    scale0 = float(np.exp(np.mean(np.log(t))))
    u = t / scale0  # work near 1 so that u**k neither overflows nor underflows early
    lu = np.log(u)
    r = int((~cens).sum())
    mean_lu_obs = float(lu[~cens].mean())

    def g(k: float) -> float:
        e = k * lu
        w = np.exp(e - e.max())  # u**k rescaled: the ratio below is scale-free
        return float(np.sum(w * lu) / np.sum(w)) - 1.0 / k - mean_lu_obs

    lo, hi = 1e-3, 1e3
    if g(lo) > 0 or g(hi) < 0:  # degenerate data (all equal, ...): keep a bound
        k = lo if g(lo) > 0 else hi
    else:
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            if g(mid) < 0:
                lo = mid
            else:
                hi = mid
            if hi / lo < 1 + 1e-12:
                break
        k = math.sqrt(lo * hi)
    e = k * lu
    emax = float(e.max())
    lam_u = math.exp((emax + math.log(float(np.sum(np.exp(e - emax))) / r)) / k)
    scale = lam_u * scale0
    zk = (t / scale) ** k
    ll = float(
        np.sum(math.log(k) - math.log(scale) + (k - 1) * np.log(t[~cens] / scale) - zk[~cens])
        - np.sum(zk[cens])
    )
    return {"shape": k, "scale_ms": scale}, ll


def _fit_exponential(t: np.ndarray, cens: np.ndarray) -> tuple[dict[str, float], float]:
    """Exponential MLE with censoring: mean = total exposure / number of events."""
    r = int((~cens).sum())
    mean = float(t.sum()) / r
    ll = float(-r * math.log(mean) - t.sum() / mean)
    return {"mean_ms": mean}, ll


_FITS = {"lognormal": _fit_lognormal, "weibull": _fit_weibull, "exponential": _fit_exponential}


# --- goodness of fit ------------------------------------------------------------------


def kaplan_meier(t: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier estimate of the CDF at each distinct event time.

    Returns ``(event_times, F)`` with F(t) = 1 − S(t) just after each event time.
    """
    t = np.asarray(t, dtype=np.float64)
    censored = np.asarray(censored, dtype=bool)
    ev = np.unique(t[~censored])
    # at risk at time u: all with t >= u; deaths at u: uncensored with t == u
    sorted_t = np.sort(t)
    at_risk = len(t) - np.searchsorted(sorted_t, ev, side="left")
    obs_sorted = np.sort(t[~censored])
    deaths = np.searchsorted(obs_sorted, ev, side="right") - np.searchsorted(
        obs_sorted, ev, side="left"
    )
    surv = np.cumprod(1.0 - deaths / at_risk)
    return ev, 1.0 - surv


def _ks(model_cdf: np.ndarray, ev: np.ndarray, f_km: np.ndarray) -> float:
    """Sup distance between a model CDF (evaluated at ``ev``) and the KM step function."""
    before = np.concatenate([[0.0], f_km[:-1]])
    return float(np.max(np.maximum(np.abs(f_km - model_cdf), np.abs(before - model_cdf))))


def _kolmogorov_pvalue(d: float, n: int) -> float:
    """Asymptotic Kolmogorov p-value with Stephens' small-sample correction."""
    if n <= 0:
        return float("nan")
    sn = math.sqrt(n)
    lam = (sn + 0.12 + 0.11 / sn) * d
    if lam < 1e-3:
        return 1.0
    k = np.arange(1, 101)
    p = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * (k * lam) ** 2))
    return float(min(max(p, 0.0), 1.0))


def fit_tail(
    windows_ms: np.ndarray, censored: np.ndarray, *, target: float = 0.99
) -> TailModel | None:
    """Fit lognormal, Weibull and exponential to window lengths and keep the best by KS.

    ``windows_ms`` holds each window's length, or for a censored window the time observed
    before the trace ended. Zero-length windows (an immediate retry would have worked) and
    non-finite values are left out of the fit and counted in ``n_zero``. Returns ``None``
    when fewer than 3 uncensored positive windows remain: no tail can be fitted to that.
    """
    t = np.asarray(windows_ms, dtype=np.float64)
    c = np.asarray(censored, dtype=bool)
    keep = np.isfinite(t) & (t > 0)
    n_zero = int((~keep).sum())
    t, c = t[keep], c[keep]
    if int((~c).sum()) < 3 or len(np.unique(t[~c])) < 2:
        return None
    ev, f_km = kaplan_meier(t, c)
    results = []
    for name, fit in _FITS.items():
        params, ll = fit(t, c)
        ks = _ks(_CDF[name](params, ev), ev, f_km)
        results.append((ks, name, params, ll))
    results.sort(key=lambda r: (r[0], r[1]))
    ks, name, params, ll = results[0]
    q = _QUANTILE[name]
    return TailModel(
        distribution=name,
        parameters=tuple((k, float(v)) for k, v in params.items()),
        ks_statistic=ks,
        ks_pvalue=_kolmogorov_pvalue(ks, int((~c).sum())),
        log_likelihood=ll,
        n=len(t),
        n_censored=int(c.sum()),
        n_zero=n_zero,
        target=target,
        p50_ms=q(params, 0.5),
        p99_ms=q(params, 0.99),
        p999_ms=q(params, 0.999),
        # An unbounded model never reaches 100 %: a target of 1 is read as 99.99 %.
        budget_for_target_ms=q(params, min(target, MAX_MODEL_TARGET)),
        alternatives=tuple((r[1], r[0]) for r in results),
    )
