"""Matrix products that read compact weights (bf16 words, int8 + scales) without unpacking them to memory.

    y = W x  for every row of x:   x (R, K) float32, W (N, K) stored compactly, y (R, N) float32

Two regimes, two strategies (``tinyrwkv.nn.compact`` picks one per call):

* few rows (RNN-mode decoding: R = batch size, 1..8): the kernels below read each weight once and
  multiply-add it in a register (as float32, or for one int8 token as an integer against x in int16). Decoding is bound by memory bandwidth (every weight
  is read once per token and used for R multiply-adds), so bytes read per weight are what count:
  4 for float32, 2 for bf16, 1 for int8 (+ 4 bytes of scale per row or per group).
* many rows (a prompt, R >= ``BLAS_MIN_ROWS``): the products are bound by arithmetic, so a block of
  weight rows is turned back into float32 (``*_dequantize_rows``) and handed to BLAS (sgemm);
  the conversion costs one pass over the block, the product 2 R flops per weight.

What the compiler makes of them (checked with ``kernel.inspect_asm(sig)`` on an x86-64 CPU with
AVX-512 (flags avx512f/bw/vnni, avx512_bf16), LLVM preferring 256-bit vectors: see ``asm_summary``,
and ``tests/test_compact.py`` holds them to it): the inner loop over K is vectorised and unrolled.

    one token (decoding's hot path; ``int8_matvec1``, ``bf16_matvec1``)
      int8:  x rounded once to int16 steps (``quantize_x16``); vpmovsxbw (int8 -> int16),
             vpmaddwd (16 int16 products summed pairwise into 8 exact int32 lanes), vpaddd; one
             float multiply per row (its scale x x's step), none per weight
      bf16:  the words read two at a time as uint32; vpslld 16 / a blend with zero give the two
             float32 (bf16 *is* the high half of a float32: exact), 2 x vfmadd231ps
      both:  ``prefetch_ahead`` (prefetcht2) asks for the bytes 32 KiB ahead of the row in hand
    a few tokens (batched decoding; ``int8_matvec``, ``bf16_matvec``)
      int8:  vpmovsxbd (int8 -> int32), vcvtdq2ps (-> float32), vfmadd231ps; the scale once per row
      bf16:  vpmovzxwd (uint16 -> uint32), vpslld 16, vfmadd231ps

and the outer loop over output rows runs on all Numba threads (``prange``; small matrices take the
``*_serial`` one-thread twins). ``FASTMATH`` lets LLVM reassociate the float sums (several partial
accumulators), so results differ from a strict left-to-right sum by float32 rounding only; inf and
NaN keep their IEEE meaning. VNNI's vpdpbusd (u8 x s8) is not used: it needs x in 8 bits, ~256x
coarser than the int16 steps above, and the int16 sum already outruns memory.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from . import FASTMATH, one_thread_twin

# at or above this many rows of x, dequantise-a-block-then-BLAS beats the kernels (measured at 169M
# shapes on 2 cores: see tinyrwkv.experiments.roofline / bench)
BLAS_MIN_ROWS = 16
# weights dequantised per BLAS call on the many-rows path: 2**20 float32 = 4 MB, cache-sized
BLOCK_ELEMENTS = 1 << 20
# below this many weights a matrix is multiplied on one thread: waking the thread pool costs more than
# it saves (and on a busy machine a parallel region waits for a descheduled worker: measured 27 ms
# instead of 1.7 ms for a 768 x 768 int8 matvec at load average 57 on 2 cores)
PARALLEL_MIN_WEIGHTS = 1 << 16
# decoding streams every weight from memory once per token; the hardware prefetcher alone kept the
# kernels at 8-10 GB/s on a chain of the 85 matrices of a 169M token (numpy's BLAS sgemv: ~20). Asking
# for the bytes this far ahead of the row being multiplied (into L2: ``prefetch``) took the int8 chain to
# 24-26 GB/s and bf16 to ~21 (measured on 2 cores; 32 KiB ahead beat 4, 16, 64, 128 and 256 KiB).
PREFETCH_AHEAD_BYTES = 32 * 1024
CACHE_LINE = 64
# int8 x int16 products summed in int32 must not overflow: |q| <= 128, |x16| <= XQ_MAX(K) (see quantize_x16)
INT32_MAX = 2**31 - 1


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bit pattern is the uint32 ``bits`` (a free register reinterpretation)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


@intrinsic
def prefetch(typingctx, arr, index):
    """Asks the CPU to start bringing the cache line holding ``arr[index]`` (1-d array) into L2
    (LLVM's llvm.prefetch: read, locality 1 = keep in the outer caches, data; on x86 ``prefetcht2``).
    A hint: it never faults and costs one instruction; the caller keeps ``index`` inside ``arr``."""
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32]))
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 1), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen


@njit(inline="always")
def prefetch_ahead(flat, start, count, itemsize):
    """Prefetches ``count`` items of ``flat`` from ``start + PREFETCH_AHEAD_BYTES / itemsize`` on, one
    cache line at a time, stopping at the end of ``flat``: the row a thread will reach a little later."""
    first = start + PREFETCH_AHEAD_BYTES // itemsize
    stop = min(first + count, flat.size)
    for i in range(first, stop, CACHE_LINE // itemsize):
        prefetch(flat, i)


@njit(inline="always")
def bf16_to_float32(word):
    """One bfloat16 (its uint16 bit pattern) -> float32, exactly: the 16 bits become the high half."""
    return _as_float32(np.uint32(word) << np.uint32(16))


# --------------------------------------------------------------------------- int8 (+ scales)
#
# q: (N, K) int8, scales: (N, G) float32 with K = G * group (G = 1: one scale per output row).
# W[n, k] ~= q[n, k] * scales[n, k // group].


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def int8_matvec(q, scales, x, out):
    """out[r, n] = scales[n, 0] sum_k q[n, k] x[r, k]   for x (R, K), out (R, N), R small: one scale per
    output row (scales (N, 1)), applied once to the row's sum.

    One pass over q per call whatever R is: row n of q (K bytes) is read once and stays in L1 while
    it meets the R rows of x. Parallel over n. (A loop over groups around the inner loop, as in
    ``int8_matvec_grouped``, measured 12x slower here, 970 us against 77 at 3072 x 768 on 2 threads: LLVM
    then vectorised it badly. Keep this one flat.)"""
    N, K = q.shape
    R = x.shape[0]
    flat = q.reshape(-1)
    for n in prange(N):
        prefetch_ahead(flat, n * K, K, 1)
        for r in range(R):
            acc = np.float32(0.0)
            for k in range(K):                              # vectorised: vpmovsxbd, vcvtdq2ps, vfmadd
                acc += np.float32(q[n, k]) * x[r, k]
            out[r, n] = acc * scales[n, 0]


@njit(cache=True)
def xq_max(K):
    """The largest |x16| for which a row's sum of K products q x16 fits int32: 128 * XQ * K <= 2^31 - 1,
    at most 32767 (int16). 22017 for K = 768, 5461 for K = 3072."""
    return min(32767, INT32_MAX // (128 * K))


@njit(cache=True)
def quantize_x16(x, K):
    """x (K,) float32 -> (x16 (K,) int16, step): x ~= x16 * step, round to nearest, the largest |x|
    mapped to ``xq_max(K)``. A relative error <= 0.5 / xq_max(K) of max|x| per entry (~1e-4 at K = 3072),
    ~40x below int8's 0.5 / 127 of a weight row's max: what the integer sum below costs in accuracy.
    step = 0 when x is all zeros; returns step = NaN when x holds inf or NaN (the caller then falls
    back to floats)."""
    amax = np.float32(0.0)
    for k in range(K):
        amax = max(amax, abs(x[k]))
    x16 = np.zeros(K, np.int16)
    if not np.isfinite(amax):
        return x16, np.float32(np.nan)
    if amax == 0:
        return x16, np.float32(0.0)
    inv = np.float32(xq_max(K)) / amax
    for k in range(K):
        x16[k] = np.int16(np.rint(x[k] * inv))
    return x16, amax / np.float32(xq_max(K))


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def int8_matvec1(q, scales, x, out):
    """``int8_matvec`` for one row of x (decoding one token): x (K,), out (N,), in integers.

    x is quantised once to int16 (``quantize_x16``); each output is then an exact int32 sum

        out[n] = (sum_k q[n, k] x16[k]) * scales[n, 0] * step

    which LLVM turns into ``vpmaddwd`` (16 products of int16 pairs summed into 8 int32 lanes per
    instruction: q sign-extended by ``vpmovsxbw``) instead of widening every weight to float32. With
    ``prefetch_ahead`` asking for the bytes 32 KiB ahead, the 85 matrices of a 169M token stream at
    ~24-26 GB/s on 2 cores (the float32-accumulating kernel: 8-10 GB/s). K <= 65536 (``xq_max`` >= 255);
    x holding inf or NaN takes the float32 loop, so such values propagate as in float32 arithmetic."""
    N, K = q.shape
    x16, step = quantize_x16(x, K)
    flat = q.reshape(-1)
    if np.isnan(step):
        for n in prange(N):
            acc = np.float32(0.0)
            for k in range(K):
                acc += np.float32(q[n, k]) * x[k]
            out[n] = acc * scales[n, 0]
        return
    for n in prange(N):
        prefetch_ahead(flat, n * K, K, 1)
        qn = q[n]
        acc = np.int32(0)
        for k in range(K):                                  # vectorised: vpmovsxbw, vpmaddwd, vpaddd
            acc += np.int32(qn[k]) * np.int32(x16[k])
        # Numba types int32 * int32 as int64; truncating the sum to int32 (exact: see xq_max) is what
        # lets LLVM keep the whole reduction in 32-bit lanes and use vpmaddwd (without it: scalar imul)
        out[n] = np.float32(np.int32(acc)) * (scales[n, 0] * step)


# the integer kernel's limit on K (beyond it, the float32 kernel int8_matvec)
INT8_INTEGER_MAX_K = 1 << 16


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def bf16_matvec1(pairs, x, out):
    """``bf16_matvec`` for one row of x (decoding one token): x (K,), out (N,), K even, the weights
    read as ``pairs`` (N, K / 2) uint32 (the (N, K) uint16 words viewed two at a time: on a
    little-endian CPU word 2j is the low half, word 2j + 1 the high half).

    Each uint32 gives two float32 with two integer ops and no widening loads:

        w[2j + 1] = the bits with the low half cleared    (pairs[j] & 0xFFFF0000)
        w[2j]     = the low half moved up                  (pairs[j] << 16)

    against x split once into its even and odd entries. Prefetched 32 KiB ahead like ``int8_matvec1``:
    ~21 GB/s on the 169M chain on 2 cores (the uint16 kernel without prefetch: ~18)."""
    N, K2 = pairs.shape
    x_even = np.empty(K2, np.float32)
    x_odd = np.empty(K2, np.float32)
    for j in range(K2):
        x_even[j] = x[2 * j]
        x_odd[j] = x[2 * j + 1]
    flat = pairs.reshape(-1)
    for n in prange(N):
        prefetch_ahead(flat, n * K2, K2, 4)
        pn = pairs[n]
        acc = np.float32(0.0)
        for j in range(K2):                                 # vectorised: vpslld, vpand, 2 x vfmadd
            u = pn[j]
            acc += _as_float32(u << np.uint32(16)) * x_even[j] + _as_float32(u & np.uint32(0xFFFF0000)) * x_odd[j]
        out[n] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def int8_matvec_grouped(q, scales, x, out):
    """out[r, n] = sum_k q[n, k] scales[n, k // group] x[r, k], scales (N, G), group = K / G: one sum per
    group, scaled once. Parallel over n."""
    N, K = q.shape
    G = scales.shape[1]
    group = K // G
    R = x.shape[0]
    flat = q.reshape(-1)
    for n in prange(N):
        prefetch_ahead(flat, n * K, K, 1)
        for r in range(R):
            acc = np.float32(0.0)
            for g in range(G):
                s = np.float32(0.0)
                base = g * group
                for k in range(base, base + group):
                    s += np.float32(q[n, k]) * x[r, k]
                acc += s * scales[n, g]
            out[r, n] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
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


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def bf16_matvec(words, x, out):
    """out[r, n] = sum_k bf16(words[n, k]) x[r, k]   for x (R, K), out (R, N), R small. Parallel over n."""
    N, K = words.shape
    R = x.shape[0]
    flat = words.reshape(-1)
    for n in prange(N):
        prefetch_ahead(flat, n * K, K, 2)
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
int8_matvec_serial = one_thread_twin(int8_matvec)
int8_matvec1_serial = one_thread_twin(int8_matvec1)
bf16_matvec1_serial = one_thread_twin(bf16_matvec1)
int8_matvec_grouped_serial = one_thread_twin(int8_matvec_grouped)
bf16_matvec_serial = one_thread_twin(bf16_matvec)


def use_threads(weights: int) -> bool:
    """Whether a product with this many weights should run on the Numba thread pool (a pool of more
    than one thread: ``NUMBA_NUM_THREADS``, read once at import; a smaller ``numba.set_num_threads``
    mask still runs the parallel kernel, on that many threads)."""
    return weights >= PARALLEL_MIN_WEIGHTS and numba.config.NUMBA_NUM_THREADS > 1


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
    wanted = ("vpmovsxbd", "vpmovsxbw", "vpmovzxwd", "vpslld", "vpand", "vpblendw", "vcvtdq2ps", "vfmadd231ps",
              "vfmadd213ps", "vpdpbusd", "vpmaddwd", "vpdpwssd", "vdpbf16ps", "prefetcht2")
    counts = {m: asm.count(m) for m in wanted}
    counts["zmm"] = asm.count("zmm")
    counts["ymm"] = asm.count("ymm")
    import llvmlite.binding as llvm
    counts["cpu"] = llvm.get_host_cpu_name()
    return counts
