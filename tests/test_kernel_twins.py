"""One-thread twins of parallel kernels really run on one thread, even from Numba's on-disk cache.

Numba's cache keys a function by name, signature and bytecode but not by its options, so an
``njit(cache=True)`` of a parallel kernel's own Python function shared its cache entry: whichever
variant was compiled first was loaded for both, and the "one-thread" twin started the thread pool
(on 2 cores, a decoding step then waited milliseconds for a worker). ``kernels.one_thread_twin``
compiles a renamed copy. This test caches every parallel kernel in one process, then calls only the
twins in a fresh process sharing that cache, and asks Numba whether a thread pool was ever started."""
import os
import subprocess
import sys
import textwrap

ARGS = """
import numpy as np
from tinyrwkv.kernels import matmul_numba as M, fused_numba as K
q = np.ones((4, 8), np.int8); s = np.ones((4, 1), np.float32); g = np.ones((4, 2), np.float32)
words = np.ones((4, 8), np.uint16); pairs = words.view(np.uint32)
x = np.ones((2, 8), np.float32); out = np.empty((2, 4), np.float32)
h = np.ones((1, 3, 8), np.float32); prev = np.zeros((1, 8), np.float32); w8 = np.ones(8, np.float32)
mus = (np.ones(8, np.float32), np.ones(8, np.float32)); mixed = np.empty((2, 1, 3, 8), np.float32); ln = np.empty((1, 3, 8), np.float32)
calls = {
    "int8_matvec": (q, s, x, out), "int8_matvec1": (q, s, x[0], out[0]), "bf16_matvec1": (pairs, x[0], out[0]),
    "int8_matvec_grouped": (q, g, x, out), "bf16_matvec": (words, x, out),
}
fused = {"ln_shift_mix": (h, prev, w8, w8, 1e-5, mus, mixed, ln), "sigmoid_gate": (x, x.copy()),
         "squared_relu": (x.copy(),)}
"""

FIRST = ARGS + """
for name, args in calls.items():
    getattr(M, name)(*args)
for name, args in fused.items():
    getattr(K, name + "_parallel")(*args)
print("cached")
"""

SECOND = ARGS + """
import numba
for name, args in calls.items():
    getattr(M, name + "_serial")(*args)
for name, args in fused.items():
    getattr(K, name + "_serial")(*args)
try:
    print("thread pool started:", numba.threading_layer())
except ValueError:
    print("no thread pool")
"""


def test_one_thread_twins_never_start_the_thread_pool(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for script, want in ((FIRST, "cached"), (SECOND, "no thread pool")):
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == want, done.stdout
    assert any(tmp_path.rglob("*one_thread*.nbi")), "the twins were not cached under their own names"
