"""Bit-reproducible elementary functions, random draws and filters for the synthetic data generator.

Why this module exists: the same synthesis code gave different floating-point results on different CPUs.
NumPy dispatches ``exp``, ``log``, ``power``, ``sin``/``cos`` and the complex multiply to CPU-specific
SIMD loops at run time (X86_V3 = AVX2+FMA3, X86_V4 = AVX-512; see
``numpy.lib.introspect.opt_func_info()``), OpenBLAS picks a matrix-multiply kernel per CPU
(``DYNAMIC_ARCH``), an FFT convolution multiplies complex spectra (FMA-contracted in the AVX2 loop), SciPy
builds its Gaussian weights with ``numpy.exp``, and libm, the random distributions and SciPy's filters are
free to change between versions and platforms. All of these differ in the last bits, and the last bits
decide where a value is rounded to 8 bits.

Everything here is written with IEEE-754 *basic* operations only — ``+ − × ÷`` and ``sqrt``, each
correctly rounded by the standard — applied as separate NumPy ufunc calls or Python float operations in a
fixed order, plus exact operations (comparisons, min/max, ``rint``/``floor``, integer and bit
manipulation, ``math.fsum``, which is correctly rounded whatever the order). Such a computation has exactly
one result on every conforming platform, whatever SIMD width a ufunc loop uses and however many threads
run: no summation order is left to a library, no fused multiply-add can form across separate ufunc calls,
no transcendental comes from a library. The price is speed (a few NumPy passes per function) and an
accuracy of a few ulp (relative error < 1e-15), far more than image synthesis needs.

Random numbers: only ``Generator.random`` (53 random bits times 2**-53, exact) and ``Generator.integers``
(integer arithmetic) are used; uniform and Gaussian (polar method) draws are derived from them here, so
neither NumPy's ziggurat (libm ``exp``/``log`` in its rare branches) nor its C ``low + range·u`` (a fused
multiply-add where the compiler contracts it) nor a distribution's algorithm that may change between
NumPy versions is involved.
"""

from __future__ import annotations

import math

import numpy as np

# fdlibm's split of ln 2: _LN2_HI has 32 trailing zero bits, so k·_LN2_HI is exact for |k| < 2**20.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SQRT2 = 1.4142135623730951
_TINY = 2.2250738585072014e-308  # smallest normal double

#: Taylor coefficients 1/i! of exp on |r| <= ln2/2 (remainder < 1e-17 relative at degree 13).
_EXP_C = tuple(1.0 / math.factorial(i) for i in range(14))
#: 1/(2j+1): log(m) = 2·s·Σ z^j/(2j+1), s = (m−1)/(m+1), z = s², |s| <= 0.1716 (remainder < 1e-18).
_LOG_C = tuple(1.0 / (2 * j + 1) for j in range(12))
#: sin θ = θ·Σ (−1)^j z^j/(2j+1)!, cos θ = Σ (−1)^j z^j/(2j)!, z = θ², θ ∈ [0, π/2) (remainder < 1e-18).
_SIN_C = tuple((1.0 if j % 2 == 0 else -1.0) / math.factorial(2 * j + 1) for j in range(12))
_COS_C = tuple((1.0 if j % 2 == 0 else -1.0) / math.factorial(2 * j) for j in range(13))
_HALF_PI = math.pi / 2.0


def _horner(z: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """Σ coeffs[i]·z^i by Horner's rule, one multiply and one add (two ufunc calls) per step."""
    p = np.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        np.multiply(p, z, out=p)
        np.add(p, c, out=p)
    return p


def exp(x: np.ndarray | float) -> np.ndarray:
    """e**x (float64 array), reproducible bit for bit: x = k·ln2 + r, |r| <= ln2/2, Taylor series of e**r,
    times 2**k built from its bits. Underflows to 0 below −708 (no subnormals), overflows to inf above 709."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    xs = np.where(finite, np.clip(x, -708.0, 709.0), 0.0)
    k = np.rint(xs * _INV_LN2)
    r = xs - k * _LN2_HI
    r = r - k * _LN2_LO
    p = _horner(r, _EXP_C)
    scale = ((k.astype(np.int64) + 1023) << 52).view(np.float64)
    out = p * scale
    out = np.where(x < -708.0, 0.0, out)
    out = np.where(x > 709.0, np.inf, out)
    return np.where(np.isnan(x), np.nan, out)


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural logarithm (float64 array), reproducible bit for bit: x = m·2**e with m ∈ [√½, √2], then the
    atanh series of log m. log(0) = −inf, log(x < 0) = nan, log(inf) = inf."""
    x = np.asarray(x, dtype=np.float64)
    plain = bool(np.all(x >= _TINY)) and bool(np.all(x < np.inf))  # positive, normal, finite (no NaN)
    if plain:
        xs, shift = x, 0
    else:
        pos = np.isfinite(x) & (x > 0)
        sub = pos & (x < _TINY)
        xs = np.where(pos, x, 1.0) * np.where(sub, 18014398509481984.0, 1.0)  # 2**54: subnormals → normal
        shift = np.where(sub, 54, 0)
    bits = np.ascontiguousarray(xs).view(np.int64)
    e = (bits >> 52) - 1023 - shift
    m = ((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000).view(np.float64)
    big = m > _SQRT2
    m = np.where(big, m * 0.5, m)
    e = e + big
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    t = s * _horner(z, _LOG_C)
    logm = t + t
    ef = e.astype(np.float64)
    out = ef * _LN2_LO
    out = out + logm
    out = ef * _LN2_HI + out
    if plain:
        return out
    out = np.where(x == 0, -np.inf, out)
    out = np.where(np.isposinf(x), np.inf, out)
    return np.where(np.isnan(x) | (x < 0), np.nan, out)


def power(x: np.ndarray | float, y: float) -> np.ndarray:
    """x**y for x >= 0 and a scalar exponent, reproducible bit for bit (exp(y·log x); y = 1, 2, 0.5 exact)."""
    x = np.asarray(x, dtype=np.float64)
    y = float(y)
    if y == 1.0:
        return x.copy()
    if y == 2.0:
        return x * x
    if y == 0.5:
        return np.sqrt(x)
    safe = np.where(x > 0, x, 1.0)
    out = exp(y * log(safe))
    zero = 0.0 if y > 0 else (1.0 if y == 0 else np.inf)
    out = np.where(x > 0, out, zero)
    return np.where(np.isnan(x) | (x < 0), np.nan, out)


def sincos_turns(t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(sin 2πt, cos 2πt), reproducible bit for bit: exact reduction to a quadrant and θ ∈ [0, π/2),
    then Taylor series (|t| < 2**50)."""
    t = np.asarray(t, dtype=np.float64)
    t4 = t * 4.0
    q = np.floor(t4)
    f = t4 - q  # exact: the fractional bits of t4
    theta = f * _HALF_PI
    z = theta * theta
    s = theta * _horner(z, _SIN_C)
    c = _horner(z, _COS_C)
    quad = np.mod(q, 4.0)
    sin = np.select([quad == 0, quad == 1, quad == 2], [s, c, -s], -c)
    cos = np.select([quad == 0, quad == 1, quad == 2], [c, -s, -c], s)
    return sin, cos


def sincos_deg(angle_deg: float) -> tuple[float, float]:
    """(sin, cos) of an angle in degrees (Python floats), reproducible bit for bit."""
    s, c = sincos_turns(float(angle_deg) / 360.0)
    return float(s), float(c)


# ----------------------------------------------------------------------------------------------------
# random draws (from Generator.random only)


def uniform(rng: np.random.Generator, lo: float, hi: float, size: int | tuple[int, ...] | None = None):
    """U[lo, hi) as lo + (hi − lo)·u, u = Generator.random (a float for size None)."""
    if size is None:
        return float(lo) + (float(hi) - float(lo)) * float(rng.random())
    u = rng.random(size) * (float(hi) - float(lo))
    return u + float(lo)


def standard_normal(rng: np.random.Generator, size: int | tuple[int, ...] | None = None):
    """N(0, 1) by Marsaglia's polar method from Generator.random (a float for size None).

    Candidate pairs (u, v) uniform on [−1, 1)² are drawn in batches whose size depends only on how many
    values are still needed; pairs with 0 < s = u² + v² < 1 give u·f, v·f with f = √(−2·log s / s).
    """
    shape = () if size is None else ((size,) if isinstance(size, (int, np.integer)) else tuple(size))
    n = int(np.prod(shape, dtype=np.int64))
    out = np.empty(n, np.float64)
    filled = 0
    while filled < n:
        pairs = (n - filled + 1) // 2
        uv = rng.random((2, int(pairs * 1.35) + 8)) * 2.0 - 1.0  # exact
        u, v = uv[0], uv[1]
        s = u * u + v * v
        ok = (s < 1.0) & (s > 0.0)
        u, v, s = u[ok], v[ok], s[ok]
        f = np.sqrt(-2.0 * log(s) / s)
        z = np.stack([u * f, v * f], axis=1).ravel()  # u₁f₁, v₁f₁, u₂f₂, …
        take = min(z.size, n - filled)
        out[filled : filled + take] = z[:take]
        filled += take
    return float(out[0]) if size is None else out.reshape(shape)


def normal(rng: np.random.Generator, mean: float, std: float) -> float:
    """One N(mean, std²) draw (a Python float)."""
    return float(mean) + float(std) * standard_normal(rng)


# ----------------------------------------------------------------------------------------------------
# filters


def fsum(a: np.ndarray) -> float:
    """Correctly rounded sum of all elements (independent of order and platform)."""
    return math.fsum(np.asarray(a, np.float64).ravel().tolist())


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised Gaussian weights on [−r, r], r = int(truncate·σ + 0.5) (SciPy's radius)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = exp((x * x) * (-0.5 / (float(sigma) * float(sigma))))
    return w / fsum(w)


def correlate1d(x: np.ndarray, weights: np.ndarray, axis: int, mode: str = "reflect") -> np.ndarray:
    """Correlation of ``x`` with odd-length ``weights`` along ``axis``, taps summed in order.

    mode "reflect" (SciPy's name: d c b a | a b c d | d c b a) or "constant" (zeros outside).
    """
    x = np.asarray(x, dtype=np.float64)
    r = len(weights) // 2
    if r == 0:
        return x * float(weights[0])
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = np.pad(x, pad, mode="symmetric" if mode == "reflect" else "constant")
    n = x.shape[axis]
    out = None
    lead = (slice(None),) * axis
    for j, wj in enumerate(np.asarray(weights, np.float64).tolist()):
        term = xp[(*lead, slice(j, j + n))] * wj
        out = term if out is None else out + term
    return out


def gaussian_filter(x: np.ndarray, sigma: float, mode: str = "reflect", truncate: float = 4.0) -> np.ndarray:
    """Separable Gaussian blur of a 2-D array (axis 0, then axis 1), reproducible bit for bit."""
    if sigma <= 0:
        return np.asarray(x, dtype=np.float64).copy()
    w = gaussian_kernel1d(sigma, truncate)
    return correlate1d(correlate1d(x, w, 0, mode), w, 1, mode)


def convolve_full(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Full 2-D convolution of small arrays: ``a`` stamped at every non-zero of ``k`` (raster order)."""
    a = np.asarray(a, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    ah, aw = a.shape
    out = np.zeros((ah + k.shape[0] - 1, aw + k.shape[1] - 1), np.float64)
    for i, j in zip(*np.nonzero(k)):
        out[i : i + ah, j : j + aw] += a * float(k[i, j])
    return out
