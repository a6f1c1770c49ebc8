"""e^x for float32 x <= 0 in plain arithmetic, so that a loop calling it can be vectorised.

``np.exp`` inside an @njit loop is a call into the C library per element: LLVM cannot turn it into
vector instructions (that needs a vector math library Numba does not ship), so a sigmoid over a
512 x 768 prompt activation spends its time in 393,216 scalar calls. Written out as arithmetic,
the same loop runs 8 or 16 lanes at a time. The method is the classic one (Cephes ``expf``):

    x = n ln 2 + r,  n = round(x / ln 2),  |r| <= ln 2 / 2        (ln 2 split in two for exactness)
    e^r ~ 1 + r + r^2 p(r),  p a degree-5 polynomial              (relative error < 2e-7 on that range)
    e^x = 2^n e^r,  2^n built directly in the float's exponent bits

Only x <= 0 is needed (every caller takes e^-|a| or e^(min - max)), so nothing overflows; x is
clamped at -87.3, where e^x ~ 1e-38 is the smallest normal float32 (no slow denormals come out).
``tests/test_fused.py`` holds it to np.exp over the whole range.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .matmul_numba import _as_float32

LOG2_E = np.float32(1.44269504088896341)
LN2_HI = np.float32(0.693359375)              # ln 2 = LN2_HI - LN2_LO_NEG, LN2_HI exact in few bits
LN2_LO_NEG = np.float32(2.12194440e-4)
SMALLEST = np.float32(-87.3)                  # e^-87.3 ~ 1.2e-38: still a normal float32
# Cephes expf's polynomial for (e^r - 1 - r) / r^2, highest power first
P5, P4, P3 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
P2, P1, P0 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)


@njit(inline="always", cache=True)
def exp_nonpositive(x):
    """e^x for a float32 x <= 0 (relative error < 3e-7; x below -87.3 is taken as -87.3)."""
    x = max(x, SMALLEST)
    n = np.floor(x * LOG2_E + np.float32(0.5))                 # float32, -126 <= n <= 0
    r = x - n * LN2_HI + n * LN2_LO_NEG
    p = ((((P5 * r + P4) * r + P3) * r + P2) * r + P1) * r + P0
    e_r = p * r * r + r + np.float32(1.0)
    two_n = _as_float32(np.uint32(np.int32(n) + np.int32(127)) << np.uint32(23))   # 2^n: exponent bits
    return e_r * two_n
