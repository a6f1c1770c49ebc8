"""Matrix products that read compact weights (bf16 words, int8 + scales), accumulating in float32.

    y = W x  for every row of x:   x (R, K) float32, W (N, K) stored compactly, y (R, N) float32

Two regimes, two strategies (``tinyrwkv.nn.compact`` picks one per call):

* few rows (RNN-mode decoding: R = batch size, 1..8): the kernels below read each weight once, turn it
  into a float32 in a register and multiply-add it. Decoding is bound by memory bandwidth (every weight
  is read once per token and used for R multiply-adds), so bytes read per weight are what count:
  4 for float32, 2 for bf16, 1 for int8 (+ 4 bytes of scale per row or per group).
* many rows (a prompt, R >= ``BLAS_MIN_ROWS``): the products are bound by arithmetic, so a block of
  weight rows is turned back into float32 (``*_dequantize_rows``) and handed to BLAS (sgemm);
  the conversion costs one pass over the block, the product 2 R flops per weight.

What the compiler makes of them (checked with ``kernel.inspect_asm(sig)`` on an x86-64 CPU with
AVX-512 (flags avx512f/bw/vnni, avx512_bf16): see ``asm_summary``): the inner loop over K is
vectorised 16 float32 lanes wide, unrolled, with

    int8:  vpmovsxbd (16 int8 -> 16 int32, sign-extended, straight from memory), vcvtdq2ps
           (-> float32), vfmadd231ps (acc += w * x); the row's (or group's) scale multiplies the
           sum once, after the loop, not every weight
    bf16:  vpmovzxwd (16 uint16 -> 16 uint32), vpslld 16 (the 16 bits become the high half of a
           float32, which *is* the bf16 value: exact), vfmadd231ps

and the outer loop over output rows runs on all Numba threads (``prange``). fastmath lets LLVM
reassociate the float sum (several partial accumulators), so results differ from a strict
left-to-right sum by float32 rounding only. Integer dot-product instructions (vpdpbusd) are not
used: they would need x quantised too, which costs accuracy and is not needed to reach the
memory bound.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

# at or above this many rows of x, dequantise-a-block-then-BLAS beats the kernels (measured at 169M
# shapes on 2 cores: see tinyrwkv.experiments.roofline / bench)
BLAS_MIN_ROWS = 16
# weights dequantised per BLAS call on the many-rows path: 2**20 float32 = 4 MB, cache-sized
BLOCK_ELEMENTS = 1 << 20
# below this many weights a matrix is multiplied on one thread: waking the thread pool costs more than
# it saves (and on a busy machine a parallel region waits for a descheduled worker: measured 27 ms
# instead of 1.7 ms for a 768 x 768 int8 matvec at load average 57 on 2 cores)
PARALLEL_MIN_WEIGHTS = 1 << 16


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bit pattern is the uint32 ``bits`` (a free register reinterpretation)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


@njit(inline="always")
def bf16_to_float32(word):
    """One bfloat16 (its uint16 bit pattern) -> float32, exactly: the 16 bits become the high half."""
    return _as_float32(np.uint32(word) << np.uint32(16))


# --------------------------------------------------------------------------- int8 (+ scales)
#
# q: (N, K) int8, scales: (N, G) float32 with K = G * group (G = 1: one scale per output row).
# W[n, k] ~= q[n, k] * scales[n, k // group].


@njit(parallel=True, fastmath=True, cache=True)
def int8_matvec(q, scales, x, out):
    """out[r, n] = scales[n, 0] sum_k q[n, k] x[r, k]   for x (R, K), out (R, N), R small: one scale per
    output row (scales (N, 1)), applied once to the row's sum.

    One pass over q per call whatever R is: row n of q (K bytes) is read once and stays in L1 while
    it meets the R rows of x. Parallel over n. (A loop over groups around the inner loop, as in
    ``int8_matvec_grouped``, measured 40x slower here: LLVM then vectorised it badly. Keep this one flat.)"""
    N, K = q.shape
    R = x.shape[0]
    for n in prange(N):
        for r in range(R):
            acc = np.float32(0.0)
            for k in range(K):                              # vectorised: vpmovsxbd, vcvtdq2ps, vfmadd
                acc += np.float32(q[n, k]) * x[r, k]
            out[r, n] = acc * scales[n, 0]


@njit(parallel=True, fastmath=True, cache=True)
def int8_matvec1(q, scales, x, out):
    """``int8_matvec`` for one row of x: x (K,), out (N,). The 1-d x lets LLVM unroll the inner loop
    4x (26 vpmovsxbd/vcvtdq2ps against 5 for the (R, K) kernel) and the rows scale with threads:
    measured on the 50277 x 768 head from memory, 6.3 GB/s on one thread, 12.0 on two (the (R, K)
    kernel: ~6 on either)."""
    N, K = q.shape
    for n in prange(N):
        qn = q[n]
        acc = np.float32(0.0)
        for k in range(K):
            acc += np.float32(qn[k]) * x[k]
        out[n] = acc * scales[n, 0]


@njit(parallel=True, fastmath=True, cache=True)
def bf16_matvec1(words, x, out):
    """``bf16_matvec`` for one row of x: x (K,), out (N,) (see ``int8_matvec1``)."""
    N, K = words.shape
    for n in prange(N):
        wn = words[n]
        acc = np.float32(0.0)
        for k in range(K):
            acc += bf16_to_float32(wn[k]) * x[k]
        out[n] = acc


@njit(parallel=True, fastmath=True, cache=True)
def int8_matvec_grouped(q, scales, x, out):
    """out[r, n] = sum_k q[n, k] scales[n, k // group] x[r, k], scales (N, G), group = K / G: one sum per
    group, scaled once. Parallel over n."""
    N, K = q.shape
    G = scales.shape[1]
    group = K // G
    R = x.shape[0]
    for n in prange(N):
        for r in range(R):
            acc = np.float32(0.0)
            for g in range(G):
                s = np.float32(0.0)
                base = g * group
                for k in range(base, base + group):
                    s += np.float32(q[n, k]) * x[r, k]
                acc += s * scales[n, g]
            out[r, n] = acc


@njit(parallel=True, fastmath=True, cache=True)
def int8_dequantize_rows(q, scales, n0, out):
    """out[i, :] = q[n0 + i, :] * scales[n0 + i, group of k], float32: rows n0 .. n0 + len(out)."""
    K = q.shape[1]
    G = scales.shape[1]
    group = K // G
    for i in prange(out.shape[0]):
        n = n0 + i
        for g in range(G):
            s = scales[n, g]
            for k in range(g * group, (g + 1) * group):
                out[i, k] = np.float32(q[n, k]) * s


# --------------------------------------------------------------------------- bf16
#
# words: (N, K) uint16, the high halves of the float32 weights (rounded to nearest even).


@njit(parallel=True, fastmath=True, cache=True)
def bf16_matvec(words, x, out):
    """out[r, n] = sum_k bf16(words[n, k]) x[r, k]   for x (R, K), out (R, N), R small. Parallel over n."""
    N, K = words.shape
    R = x.shape[0]
    for n in prange(N):
        for r in range(R):
            acc = np.float32(0.0)
            for k in range(K):                              # vectorised: vpmovzxwd, vpslld, vfmadd
                acc += bf16_to_float32(words[n, k]) * x[r, k]
            out[r, n] = acc


@njit(parallel=True, cache=True)
def bf16_dequantize_rows(words, n0, out):
    """out[i, :] = float32 of words[n0 + i, :]: rows n0 .. n0 + len(out), exactly."""
    K = words.shape[1]
    for i in prange(out.shape[0]):
        for k in range(K):
            out[i, k] = bf16_to_float32(words[n0 + i, k])


# one-thread twins (prange runs as range), for small matrices and NUMBA_NUM_THREADS=1
int8_matvec_serial = njit(fastmath=True, cache=True)(int8_matvec.py_func)
int8_matvec1_serial = njit(fastmath=True, cache=True)(int8_matvec1.py_func)
bf16_matvec1_serial = njit(fastmath=True, cache=True)(bf16_matvec1.py_func)
int8_matvec_grouped_serial = njit(fastmath=True, cache=True)(int8_matvec_grouped.py_func)
bf16_matvec_serial = njit(fastmath=True, cache=True)(bf16_matvec.py_func)


def use_threads(weights: int) -> bool:
    """Whether a product with this many weights should run on the Numba thread pool."""
    if weights < PARALLEL_MIN_WEIGHTS:
        return False
    import numba
    return numba.get_num_threads() > 1


# --------------------------------------------------------------------------- the generated code


def asm_summary(kernel, *arg_types) -> dict:
    """How often the vector instructions that matter appear in ``kernel``'s machine code for
    these argument types (compiling it if needed): {mnemonic: count}, plus "cpu" (LLVM's host CPU
    name). Zero counts of every vector form mean the inner loop was not vectorised."""
    import numba
    sig = tuple(numba.typeof(a) for a in arg_types)
    # code loaded from the on-disk cache cannot be inspected: compile an uncached twin
    options = {k: v for k, v in kernel.targetoptions.items() if k in ("parallel", "fastmath")}
    twin = numba.njit(**options)(kernel.py_func)
    twin.compile(sig)
    asm = twin.inspect_asm(sig)
    wanted = ("vpmovsxbd", "vpmovzxwd", "vpslld", "vcvtdq2ps", "vfmadd231ps", "vfmadd213ps",
              "vpdpbusd", "vpmaddwd", "vdpbf16ps")
    counts = {m: asm.count(m) for m in wanted}
    counts["zmm"] = asm.count("zmm")
    counts["ymm"] = asm.count("ymm")
    import llvmlite.binding as llvm
    counts["cpu"] = llvm.get_host_cpu_name()
    return counts
