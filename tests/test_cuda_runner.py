"""DeviceRWKV (tinyrwkv/runners/cuda_rwkv4.py) against the NumPy model, on the CUDA simulator.

Tiny shapes (L=2, C=32, V=64, F=128): the simulator runs each CUDA thread as a Python thread.
The runner's defaults on the simulator are the v1 kernels (fewest threads); the faster versions
are checked one by one against NumPy in test_cuda_ops.py, and inside the model by
scripts/gpu_check.py on a GPU. The last test compiles every kernel for real GPUs (no GPU needed,
libNVVM needed).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tinyrwkv.kernels import cuda_usable

if not cuda_usable():
    pytest.skip("TINYRWKV_REAL_GPU=1 turned the simulator off, but no CUDA GPU is usable here",
                allow_module_level=True)

from tinyrwkv.models.rwkv import RWKV, RWKVConfig, RWKVState  # noqa: E402
from tinyrwkv.runners.cuda_rwkv4 import DeviceRWKV, DeviceRWKVState, count_copies  # noqa: E402

CONFIG = RWKVConfig(n_layer=2, n_embd=32, vocab_size=64, ffn_dim=128)
TOL = 1e-5


@pytest.fixture(scope="module")
def models():
    ref = RWKV.random(CONFIG, seed=3, scale=0.3, backend="numpy")    # scale 0.3: logits of order 1-10
    return ref, DeviceRWKV.from_model(ref)


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def state_diff(dev_state, ref_state):
    host = dev_state.to_host()
    return max(max_diff(getattr(host, f), getattr(ref_state, f)) for f in RWKVState.FIELDS)


def test_forward_then_batched_steps_equal_the_numpy_model(models):
    ref, dev = models
    tokens = np.array([[1, 5, 7], [3, 2, 63]])                          # B = 2, T = 3
    logits, state = dev.forward(tokens)
    want, want_state = ref.forward(tokens)
    assert logits.shape == (2, 3, 64) and isinstance(state, DeviceRWKVState)
    assert max_diff(logits, want) < TOL and state_diff(state, want_state) < TOL
    before = state.to_host()
    for token in ([4, 9], [0, 63]):                                   # batched RNN steps, B = 2
        logits, new_state = dev.step(np.array(token), state)
        want, want_state = ref.step(np.array(token), want_state)
        assert logits.shape == (2, 64)
        assert max_diff(logits, want) < TOL, "step logits"
        assert state_diff(new_state, want_state) < TOL, "step state"
        if token == [4, 9]:                                           # the input state is not modified
            for f in RWKVState.FIELDS:
                np.testing.assert_array_equal(getattr(state.to_host(), f), getattr(before, f))
        state = new_state
    assert abs(float(logits.std())) > 0.1                             # not a degenerate model


def test_single_sequence_last_logits_host_state_and_transfers(models):
    ref, dev = models
    host_state = ref.forward([7, 8])[1]                               # an RWKVState from the NumPy model
    before = dict(dev.transfers)
    logits, state = dev.forward([3, 1], state=host_state, full_output=False)
    want, want_state = ref.forward([3, 1], state=host_state, full_output=False)
    assert logits.shape == (64,) and max_diff(logits, want) < TOL and state_diff(state, want_state) < TOL
    logits, state = dev.step(5, state)
    want, _ = ref.step(5, want_state)
    assert logits.shape == (64,) and max_diff(logits, want) < TOL
    # host <-> device copies: the state in once (it came from the host), then one token-id upload
    # and one logits download per call; a device state is copied on the device, not across.
    assert dev.transfers["to_device"] - before["to_device"] == 3
    assert dev.transfers["to_host"] - before["to_host"] == 2
    # counted from outside (numba.cuda's own functions wrapped): the runner against the NumPy model
    # whose WKV alone runs on the device through the host wrappers (7 uploads, 4 downloads per layer)
    with count_copies() as n_dev:
        dev.step(5, state)
    hybrid = RWKV(CONFIG, ref.params, backend="cuda")
    with count_copies() as n_hybrid:
        hybrid.step(5, want_state)
    assert n_dev == {"to_device": 1, "to_host": 1}
    assert n_hybrid == {"to_device": 7 * CONFIG.n_layer, "to_host": 4 * CONFIG.n_layer}


def test_fp16_storage_equals_numpy_on_the_same_rounded_weights(models):
    ref, _ = models
    rounded = {k: (v.astype(np.float16).astype(np.float32) if v.ndim == 2 else v) for k, v in ref.params.items()}
    ref16 = RWKV(CONFIG, rounded, backend="numpy")
    dev16 = DeviceRWKV(CONFIG, ref.params, dtype="float16")
    assert dev16.weight_bytes() < 0.55 * DeviceRWKV.from_model(ref).weight_bytes()
    logits, state = dev16.forward([2, 4], full_output=False)
    want, want_state = ref16.forward([2, 4], full_output=False)
    assert max_diff(logits, want) < TOL and state_diff(state, want_state) < TOL
    assert max_diff(logits, ref.forward([2, 4], full_output=False)[0]) > 1e-4   # fp16 rounding is visible


def test_the_gpu_default_kernels_inside_the_model():
    """matvec v3 (warp shuffles), matmul v2 (shared tiles), layernorm v2 (block tree): the GPU's
    defaults, inside the whole model. A smaller model: each of their threads costs the simulator."""
    config = RWKVConfig(n_layer=1, n_embd=8, vocab_size=16, ffn_dim=16)
    ref = RWKV.random(config, seed=4, scale=0.5, backend="numpy")
    dev = DeviceRWKV(config, ref.params, matvec_version=3, matmul_version=2, layernorm_version=2)
    logits, state = dev.forward([3, 9])
    want, want_state = ref.forward([3, 9])
    assert max_diff(logits, want) < TOL and state_diff(state, want_state) < TOL
    logits, state = dev.step(5, state)
    want, want_state = ref.step(5, want_state)
    assert max_diff(logits, want) < TOL and state_diff(state, want_state) < TOL


def test_the_device_twin_of_a_compact_bf16_model_equals_it():
    from tinyrwkv.nn.compact import compact, is_compactable
    config = RWKVConfig(n_layer=1, n_embd=8, vocab_size=16, ffn_dim=16)
    params = RWKV.random(config, seed=5, scale=0.5, backend="numpy").params
    bf16 = RWKV(config, {k: compact(v, "bf16") if is_compactable(k, v.shape) else v for k, v in params.items()},
                backend="numpy")
    logits, _ = DeviceRWKV.from_model(bf16).forward([1, 2], full_output=False)
    assert max_diff(logits, bf16.forward([1, 2], full_output=False)[0]) < TOL


def test_state_round_trip_stack_select_and_errors(models):
    ref, dev = models
    _, s1 = dev.forward([1, 2])
    _, s2 = dev.forward([3])
    both = DeviceRWKVState.stack([s1, s2])
    assert (both.n_layer, both.batch_size, both.n_embd) == (2, 2, 32)
    np.testing.assert_array_equal(both.select(1).to_host().aa, s2.to_host().aa)
    np.testing.assert_array_equal(DeviceRWKVState.from_host(s1.to_host()).to_host().pp, s1.to_host().pp)
    with pytest.raises(ValueError, match=r"state has shape .* need \(2, 3, 32\)"):
        dev.step(np.array([1, 2, 3]), both)
    with pytest.raises(ValueError, match="token id 64 is out of range"):
        dev.step(64)
    with pytest.raises(ValueError, match="dtype must be one of"):
        DeviceRWKV(CONFIG, ref.params, dtype="int8")
    with pytest.raises(ValueError, match=r"matvec_version must be one of \(1, 2, 3\), got 4"):
        DeviceRWKV(CONFIG, ref.params, matvec_version=4)


def test_profile_step_names_every_kernel_family(models):
    _, dev = models
    profile = dev.profile_step(0, repeats=1)
    assert {"embedding", "layernorm", "shift+mix", "att k,v,r", "wkv", "gates", "att output",
            "ffn key", "ffn receptance", "ffn value", "head", "total"} == set(profile)


def test_generate_cli_on_the_device_matches_the_cpu(capsys):
    from tinyrwkv.cli import main
    args = ["generate", "Once", "--model", "tiny", "--max-new-tokens", "2", "--temperature", "0", "--no-stream"]
    assert main(args) == 0
    cpu = capsys.readouterr().out
    assert main(args + ["--device", "cuda"]) == 0
    gpu = capsys.readouterr().out
    assert gpu == cpu and gpu.startswith("Once") and len(gpu.strip()) > len("Once")


def test_load_device_cuda_gives_the_device_runner():
    import tinyrwkv
    model = tinyrwkv.load("tiny", device="cuda", progress=False)
    assert isinstance(model, DeviceRWKV) and model.config.n_layer == 4
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'tpu'"):
        tinyrwkv.load("tiny", device="tpu")


# --------------------------------------------------------------------------- the real CUDA compiler


COMPILE_ALL = """
    import json, sys
    import numba.cuda.dispatcher as dispatcher
    from types import SimpleNamespace
    from numba import cuda, float32, int64, types
    from tinyrwkv.kernels import cuda_ops as O, wkv_cuda as G

    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as e:
        print("NO_NVVM", type(e).__name__, e)
        sys.exit(0)
    a = lambda dt, n: types.Array(dt, n, "C")
    f = float32
    sigs = {}
    for wd in (float32, types.float16):
        for name in ("matvec_v1", "matvec_v2", "matvec_v3", "matmul_v1", "matmul_v2"):
            sigs[f"{name}[{wd}]"] = (getattr(O, name), (a(wd, 2), a(f, 2), a(f, 2), int64))
        sigs[f"embedding_gather[{wd}]"] = (O.embedding_gather, (a(wd, 2), a(int64, 1), a(f, 2)))
    for name in ("layernorm_v1", "layernorm_v2"):
        sigs[name] = (getattr(O, name), (a(f, 2), a(f, 1), a(f, 1), f, a(f, 2)))
    sigs.update({
        "shift_mix3": (O.shift_mix3, (a(f, 3), a(f, 2), a(f, 1), a(f, 1), a(f, 1), a(f, 3), a(f, 3), a(f, 3))),
        "shift_mix2": (O.shift_mix2, (a(f, 3), a(f, 2), a(f, 1), a(f, 1), a(f, 3), a(f, 3))),
        "save_last": (O.save_last, (a(f, 3), a(f, 2))), "take_last": (O.take_last, (a(f, 3), a(f, 2))),
        "sigmoid_mul": (O.sigmoid_mul, (a(f, 2), a(f, 2))), "squared_relu": (O.squared_relu, (a(f, 2),)),
        "gate_add": (O.gate_add, (a(f, 2), a(f, 2), a(f, 2))), "copy_kernel": (O.copy_kernel, (a(f, 1), a(f, 1))),
        "wkv_forward_v2": (G.wkv_forward_v2, (a(f, 1), a(f, 1), a(f, 3), a(f, 3), a(f, 2), a(f, 2), a(f, 2), a(f, 3))),
        "wkv_step_v1": (G.wkv_step_v1, (a(f, 1), a(f, 1), a(f, 2), a(f, 2), a(f, 2), a(f, 2), a(f, 2), a(f, 2))),
    })
    report = {}
    for cc in ((7, 5), (8, 0), (8, 6), (9, 0)):
        # device functions (warp_sum, sigmoid...) ask for the current device's compute capability
        dispatcher.get_current_device = lambda cc=cc: SimpleNamespace(compute_capability=cc)
        for key, (kernel, sig) in sigs.items():
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            report[f"{cc[0]}.{cc[1]}:{key}"] = {"f64": ptx.count(".f64"), "shfl": "shfl.sync" in ptx,
                                                "target": f"sm_{cc[0]}{cc[1]}" in ptx}
    print(json.dumps(report))
"""


@pytest.mark.nvvm
def test_every_kernel_compiles_for_compute_capabilities_75_80_86_90():
    """PTX for each real target, float32 and float16 weights: no float64 instruction anywhere, real
    warp shuffles in the matvecs. Runs without the simulator, in a subprocess; needs libNVVM (the
    CUDA compiler library; a laptop without the CUDA toolkit lacks it), no GPU."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(COMPILE_ALL)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    if last.startswith("NO_NVVM"):
        pytest.skip(f"libNVVM (the CUDA toolkit's compiler library) is absent, so PTX cannot be made here: {last}")
    report = json.loads(last)
    assert len(report) == 4 * 24
    for key, r in report.items():
        assert r["target"], f"{key}: PTX not for its compute capability"
        assert r["f64"] == 0, f"{key}: float64 instructions (a float64 constant crept in)"
        if "matvec_v2" in key or "matvec_v3" in key:
            assert r["shfl"], f"{key}: no warp shuffle in the PTX"


def test_device_cuda_without_a_gpu_says_what_to_do():
    """Without a GPU and without the simulator, --device cuda is a usage error naming the way out."""
    code = ("import sys; from tinyrwkv.kernels import real_gpu_present; from tinyrwkv.cli import main\n"
            "sys.exit(99 if real_gpu_present() else main(['generate', 'Once', '--model', 'tiny', '--device', 'cuda']))")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_ENABLE_CUDASIM": "0"},
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 99:
        pytest.skip("a real GPU is present: --device cuda works here")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--device cuda" in proc.stderr and "NUMBA_ENABLE_CUDASIM=1" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
