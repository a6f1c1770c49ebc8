"""numba.cuda WKV kernels against the NumPy reference.

In CI these run on Numba's CUDA simulator (conftest sets NUMBA_ENABLE_CUDASIM=1), which executes
every CUDA thread as a Python thread: about 70k thread-steps per second, so shapes stay tiny.
With TINYRWKV_REAL_GPU=1 the same tests run on the GPU, plus the ``gpu``-marked ones at larger
shapes. The simulator runs the kernels as Python, so it cannot catch what only the CUDA compiler
sees: ``test_kernels_compile_for_the_real_cuda_target`` lowers them for a real GPU (no GPU needed).
"""
import functools
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from wkv_checks import assert_close, wkv_inputs

from tinyrwkv.kernels import cuda_usable, get_wkv, wkv_numpy

if not cuda_usable():       # only when TINYRWKV_REAL_GPU=1 was set on a machine without a GPU
    pytest.skip("TINYRWKV_REAL_GPU=1 turned the simulator off, but no CUDA GPU is usable here",
                allow_module_level=True)
cuda_backend = get_wkv("cuda")       # the simulator in CI; a real GPU with TINYRWKV_REAL_GPU=1

TOL = {np.float32: 2e-6, np.float64: 1e-12}
HIDE_NVVM = pathlib.Path(__file__).resolve().parent / "hide_nvvm"
rand_inputs = functools.partial(wkv_inputs, B=2, T=8, C=6)      # tiny: the simulator is slow


# threads_per_block=8 with B*C = 12 threads: two blocks, the second one partly idle (the bounds check).
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("version, chunk_len", [(1, None), (2, None), (3, 3), (3, 32)])
def test_forward_versions_equal_numpy(version, chunk_len, dtype):
    w, u, k, v, _ = rand_inputs(dtype=dtype, seed=version)
    _, state = wkv_numpy.wkv_forward(w, u, k[:, :3], v[:, :3])          # a non-empty state in
    y0, s0 = wkv_numpy.wkv_forward(w, u, k, v, state)
    kwargs = {"chunk_len": chunk_len} if chunk_len else {}
    y1, s1 = cuda_backend.wkv_forward(w, u, k, v, state, version=version, threads_per_block=8, **kwargs)
    assert_close(y1, y0, TOL[dtype], "y")
    for name, a, b in zip(("aa", "bb", "pp"), s1, s0):
        assert_close(a, b, TOL[dtype], name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_equals_numpy(dtype):
    w, u, k, v, gy = rand_inputs(dtype=dtype, seed=4)
    ref = wkv_numpy.wkv_backward(w, u, k, v, gy)
    ours = cuda_backend.wkv_backward(w, u, k, v, gy, threads_per_block=8)
    for name, a, b in zip(("gw", "gu", "gk", "gv"), ours, ref):
        assert_close(a, b, TOL[dtype], name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_equals_numpy_and_forward_with_one_token(dtype):
    w, u, k, v, _ = rand_inputs(B=3, dtype=dtype, seed=5)
    _, state = wkv_numpy.wkv_forward(w, u, k[:, :4], v[:, :4])
    y0, s0 = wkv_numpy.wkv_step(w, u, k[:, 4], v[:, 4], state)
    y1, s1 = cuda_backend.wkv_step(w, u, k[:, 4], v[:, 4], state, threads_per_block=8)
    y2, _ = cuda_backend.wkv_forward(w, u, k[:, 4:5], v[:, 4:5], state)
    assert_close(y1, y0, TOL[dtype], "y")
    assert_close(y1, y2[:, 0], TOL[dtype], "y vs forward T=1")
    for a, b in zip(s1, s0):
        assert_close(a, b, TOL[dtype], "state")


def test_step_from_empty_state_and_input_state_untouched():
    w, u, k, v, _ = rand_inputs(B=1, C=4)
    y0, _ = wkv_numpy.wkv_step(w, u, k[:, 0], v[:, 0])
    y1, state = cuda_backend.wkv_step(w, u, k[:, 0], v[:, 0])
    assert_close(y1, y0, 1e-6, "y")
    before = [s.copy() for s in state]
    cuda_backend.wkv_step(w, u, k[:, 1], v[:, 1], state)
    cuda_backend.wkv_forward(w, u, k, v, state, version=1)
    for a, b in zip(state, before):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_large_keys_stay_finite(version):
    w, u, k, v, gy = rand_inputs(T=6, C=4, seed=6, key_scale=60.0)
    k[:, ::2] = 200.0                                                # e^200 overflows float32
    y0, _ = wkv_numpy.wkv_forward(w, u, k, v)
    y1, s1 = cuda_backend.wkv_forward(w, u, k, v, version=version, chunk_len=2)
    assert np.all(np.isfinite(y1)) and all(np.all(np.isfinite(s)) for s in s1)
    assert_close(y1, y0, 1e-5, "y")
    if version == 1:                                                 # backward once is enough
        for a, b in zip(cuda_backend.wkv_backward(w, u, k, v, gy), wkv_numpy.wkv_backward(w, u, k, v, gy)):
            assert np.all(np.isfinite(a))
            assert_close(a, b, 1e-5, "grad")


def test_bad_version_and_shapes_are_named():
    w, u, k, v, gy = rand_inputs()
    with pytest.raises(ValueError, match="version must be one of"):
        cuda_backend.wkv_forward(w, u, k, v, version=7)
    with pytest.raises(ValueError, match="wkv_forward: chunk_len must be a positive int, got 0"):
        cuda_backend.wkv_forward(w, u, k, v, version=3, chunk_len=0)
    with pytest.raises(ValueError, match=r"wkv_backward: threads_per_block must be an int in 1..1024"):
        cuda_backend.wkv_backward(w, u, k, v, gy, threads_per_block=2048)
    with pytest.raises(ValueError, match=r"wkv_backward: gy must be \(B, T, C\)"):
        cuda_backend.wkv_backward(w, u, k, v, gy[:, :2])
    with pytest.raises(ValueError, match=r"wkv_step: k and v must both be \(B, C\)"):
        cuda_backend.wkv_step(w, u, k, v)


def _run_without_simulator(code):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)


# The kernels as the real CUDA compiler front end sees them: typed and lowered to LLVM IR for
# compute capability 9.0. No GPU and no CUDA toolkit are needed for this stage (only PTX
# generation needs NVVM). The device-function helpers ask for the current device's compute
# capability, so the script stubs that one lookup.
LOWER_KERNELS = """
    import json, re
    import numba.cuda.dispatcher as dispatcher
    from types import SimpleNamespace
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(9, 0))
    from numba import float32, float64, int64, types
    from numba.cuda.compiler import compile_cuda
    from tinyrwkv.kernels import wkv_cuda as G, wkv6_cuda as G6, wkv7_cuda as G7

    def signatures(f):
        a1, a2, a3, a4, a5 = (types.Array(f, n, "C") for n in (1, 2, 3, 4, 5))
        return {
            "wkv_forward_v1": (a1, a1, a3, a3, a2, a2, a2, a3),
            "wkv_forward_v2": (a1, a1, a3, a3, a2, a2, a2, a3),
            "chunk_state_kernel": (a1, a3, a3, int64, a3, a3, a3),
            "chunk_carry_kernel": (a1, a3, a3, a3, int64, int64, a2, a2, a2, a3, a3, a3),
            "chunk_output_kernel": (a1, a1, a3, a3, int64, a3, a3, a3, a3),
            "wkv_backward_v1": (a1, a1, a3, a3, a3, a3, a3, a3, a2, a2, a3, a3),
            "wkv_step_v1": (a1, a1, a2, a2, a2, a2, a2, a2),
            # WKV-5/6 and WKV-7 (no exp inside: their decay arrives as a factor)
            "wkv6_forward_v1": (a4, a4, a4, a4, a2, a4, a4),
            "wkv6_forward_v2": (a4, a4, a4, a4, a2, a4, a4),
            "wkv7_forward_v1": (a4,) * 6 + (a4, a4),
            "wkv7_forward_v2": (a4,) * 6 + (a4, a4),
            "wkv7_backward_v1": (a4,) * 7 + (a5,) + (a4,) * 6,
        }

    def kernel(name):
        return getattr(G7 if name.startswith("wkv7") else G6 if name.startswith("wkv6") else G, name)

    def llvm_ir(library):
        return [library.get_llvm_str()] + [s for lib in getattr(library, "_linking_libraries", ())
                                           for s in llvm_ir(lib)]

    report = {}
    for f in (float32, float64):
        for name, sig in signatures(f).items():
            ir = "\\n".join(llvm_ir(compile_cuda(kernel(name).py_func, types.void, sig, cc=(9, 0)).library))
            # float64 arithmetic or double-precision calls (constants folded by fptrunc do not count)
            doubles = [l for l in ir.splitlines()
                       if re.search(r"= (fadd|fsub|fmul|fdiv|fcmp \\w+|fpext|sitofp|uitofp) .*double|call double", l)]
            report[f"{f}:{name}"] = {"double_ops": len(doubles), "expf": "__nv_expf" in ir}
    print(json.dumps(report))
"""


@pytest.mark.nvvm
def test_kernels_compile_for_the_real_cuda_target():
    import json

    out = _run_without_simulator(LOWER_KERNELS)
    if out.returncode != 0 and ("AttributeError" in out.stderr or "ImportError" in out.stderr):
        pytest.skip(f"this Numba's CUDA compiler internals differ: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report) == 24
    for key, r in report.items():
        if key.startswith("float32"):
            assert r["double_ops"] == 0, f"{key} does float64 arithmetic: a float64 constant crept in"
            assert r["expf"] or ":wkv6_" in key or ":wkv7_" in key, f"{key} does not call the float32 exp"
        else:
            assert r["double_ops"] > 0, key           # the float64 build really is float64


def test_importing_never_touches_cuda():
    # Without the simulator and (here) without a GPU: importing the package and even the CUDA
    # module must work; asking for the backend says what to do, or works when a GPU is present.
    out = _run_without_simulator("""
        import sys
        import tinyrwkv, tinyrwkv.kernels
        assert "numba.cuda" not in sys.modules, "importing tinyrwkv imported numba.cuda"
        import tinyrwkv.kernels.wkv_cuda
        from tinyrwkv.kernels import available_backends, get_wkv, real_gpu_present
        gpu = real_gpu_present()
        try:
            get_wkv("cuda")
            print("cuda ok", gpu, sorted(available_backends()))
        except RuntimeError as e:
            print("no gpu", gpu, sorted(available_backends()), str(e))
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    line = out.stdout.strip()
    if line.startswith("no gpu"):
        assert "False" in line and "'cuda'" not in line.split("]")[0]
        assert "NUMBA_ENABLE_CUDASIM=1" in line and "numba" in line
    else:
        assert line.startswith("cuda ok True") and "'cuda'" in line


# --------------------------------------------------------------------------- real GPU only


@pytest.mark.gpu
@pytest.mark.parametrize("version", [1, 2, 3])
def test_real_gpu_forward_equals_numpy_at_larger_shapes(version):
    w, u, k, v, _ = rand_inputs(B=4, T=300, C=96, seed=7)
    _, state = wkv_numpy.wkv_forward(w, u, k[:, :20], v[:, :20])
    y0, s0 = wkv_numpy.wkv_forward(w, u, k, v, state)
    y1, s1 = cuda_backend.wkv_forward(w, u, k, v, state, version=version)
    assert_close(y1, y0, 2e-5, "y")
    for a, b in zip(s1, s0):
        assert_close(a, b, 2e-5, "state")


@pytest.mark.gpu
def test_real_gpu_backward_and_step_equal_numpy_at_larger_shapes():
    w, u, k, v, gy = rand_inputs(B=4, T=300, C=96, seed=8)
    for a, b in zip(cuda_backend.wkv_backward(w, u, k, v, gy), wkv_numpy.wkv_backward(w, u, k, v, gy)):
        assert_close(a, b, 2e-5, "grad")
    _, state = wkv_numpy.wkv_forward(w, u, k, v)
    y0, _ = wkv_numpy.wkv_step(w, u, k[:, 0], v[:, 0], state)
    y1, _ = cuda_backend.wkv_step(w, u, k[:, 0], v[:, 0], state)
    assert_close(y1, y0, 2e-6, "step")


def test_gpu_check_script_rehearses_on_the_simulator(tmp_path):
    # scripts/gpu_check.py --tiny must run end to end before anyone spends GPU time on it.
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "check.json"
    gpu_check.main(["--tiny", "--out", str(out), "--only", "environment,wkv_parity,wkv_timing,launch_sweep"])
    sections = json.loads(out.read_text())["sections"]
    for name in ("environment", "wkv_parity", "wkv_timing", "launch_sweep"):
        assert "error" not in sections[name], sections[name].get("traceback")
    assert sections["wkv_parity"]["ok"] is True
    assert sections["wkv_parity"]["forward_v3"]["y"] < 1e-5
    assert set(sections["wkv_timing"]["1x8x8"]) >= {"forward_v1", "forward_v2", "forward_v3", "backward_v1"}


def test_without_libnvvm_the_compile_test_skips_and_says_why():
    """Proof for a laptop without the CUDA toolkit: with libNVVM hidden (tests/hide_nvvm makes it
    unloadable, in the child and in the child's own children) the real-target test is skipped with
    a reason naming libNVVM, rather than failing with NvvmSupportError."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HIDE_NVVM), str(HIDE_NVVM.parents[1])])}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          f"{__file__}::test_kernels_compile_for_the_real_cuda_target"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=HIDE_NVVM.parents[1])
    assert out.returncode == 0 and "1 skipped" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]
    assert "libNVVM" in out.stdout and "hidden by tests/hide_nvvm" in out.stdout, out.stdout[-3000:]


def test_gpu_check_table_reads_every_section_it_knows(capsys):
    # The table is printed LAST on the GPU run: fed a results dict shaped like the real run's.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    rs = {f"{d} matvec_v{mv}": {"decode_B1_tokens_per_s": 100.0 * mv} for d in ("float16", "float32") for mv in (1, 2, 3)}
    rs.update({"float16 matvec_v3 layernorm_v1": {"decode_B1_tokens_per_s": 50.0},
               "float16 prompt512 matmul_v2": {"tokens_per_s": 9000.0},
               "float16 prompt512 matmul_v1": {"tokens_per_s": 900.0}})
    sections = {
        "runner_speed": rs,
        "runner_parity": {"ok": True, "tolerance_fp32": 1e-3, "logit_scale": 10.0,
                          "float32": {"forward_logits": {"max_abs": 1e-5}},
                          "float16_vs_numpy_fp16_weights": {"forward_logits": {"max_abs": 2e-5}}},
        "rwkv_pip": {"cuda fp16": {"decode_B1_tokens_per_s": 400.0, "prompt512_tokens_per_s": 20000.0,
                                   "parity_last_logits": {"max_abs": 0.01}}},
        "transformers": {"device": "cuda", "float32": {"decode_B1_tokens_per_s": 60.0, "prompt512_tokens_per_s": 700.0,
                                                       "parity_last_logits": {"max_abs": 1e-4}}},
        "bandwidth": {"copy": {"device_to_device_GBps": 3500.0},
                      "matvec": {"float16 50277x768 B=1 v2": {"ms": 0.03, "weight_GBps": 2500.0}}},
        "cpu_model": {"numba": {"decode_B1_tokens_per_s": 30.0, "prompt512_tokens_per_s": 300.0}},
        "compile": {"error": "SectionTimeout: stopped after its budget of 75 s", "seconds": 75.0},
    }
    gpu_check.print_table({"sections": sections, "prompt_len": 512, "vocab_size": 50277})
    out = capsys.readouterr().out
    for fragment in ("tinyrwkv DeviceRWKV float16 matvec v3", "9000.0", "rwkv pip cuda fp16", "transformers cuda float32",
                     "float16 matvec v3 layernorm v1", "matmul v1 (prompt)", "3500 GB/s", "float16 50277x768 B=1 v2",
                     "ERROR SectionTimeout", "parity ok: True"):
        assert fragment in out, fragment
