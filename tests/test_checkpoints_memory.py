"""Loading real 169M-shaped checkpoints (random values): config inferred right, values equal to
torch's, and peak memory at most 1.5x the float32 size (measured in a fresh subprocess)."""
import json
import subprocess
import sys
import zlib

import pytest

from factories import real_169m_config
from tinyrwkv.checkpoints import expected_shapes, name_table
from tinyrwkv.checkpoints.naming import file_shape

MAX_PEAK_OVER_FP32 = 1.5

# Runs in a fresh interpreter, so nothing the test process allocated counts. Peak RSS comes from
# /proc/self/status VmHWM where it exists: ru_maxrss would do, but Linux carries the *parent's*
# peak over fork+exec, which would hide the child's own peak behind pytest's.
CHILD = r"""
import json, resource, sys, zlib
import numpy as np
from tinyrwkv.checkpoints import read_checkpoint

def peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024   # bytes on macOS, KiB on Linux

baseline = peak_rss_bytes()
config, params = read_checkpoint(sys.argv[1], progress=False)
peak = peak_rss_bytes()
print(json.dumps({
    "config": config, "over_baseline": peak - baseline,
    "fp32_bytes": sum(a.nbytes for a in params.values()),
    "crc32": {k: zlib.crc32(memoryview(a).cast("B")) for k, a in params.items()},   # no copies
    "ok_layout": all(a.dtype == np.float32 and a.flags.c_contiguous for a in params.values()),
}))
"""


def write_169m(path, naming, dtype):
    """torch.save of a 169M-shaped state dict with random values; returns the CRC-32 of each tensor's
    float32 bytes as torch converts them (the child must reproduce them bit for bit)."""
    torch = pytest.importorskip("torch")
    config = real_169m_config()
    generator = torch.Generator().manual_seed(0)
    table = name_table(config["n_layer"], naming)
    state = {table[k]: torch.empty(file_shape(k, shape), dtype=dtype).uniform_(-1, 1, generator=generator)
             for k, shape in expected_shapes(config).items()}
    torch.save(state, path)
    return {k: zlib.crc32(state[table[k]].float().numpy().tobytes()) for k in table}


@pytest.mark.slow
@pytest.mark.parametrize("naming, dtype_name, file_name", [
    ("blinkdl", "bfloat16", "RWKV-4-Pile-169M-20220807-8023.pth"),   # what BlinkDL publishes
    ("hf", "float32", "pytorch_model.bin"),                          # what RWKV/rwkv-4-169m-pile ships
])
def test_169m_loads_within_memory_budget(tmp_path, naming, dtype_name, file_name):
    torch = pytest.importorskip("torch")
    path = tmp_path / file_name
    checksums = write_169m(path, naming, getattr(torch, dtype_name))

    result = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    config = report["config"]
    assert {k: config[k] for k in ("n_layer", "n_embd", "vocab_size", "ffn_dim")} == \
        {"n_layer": 12, "n_embd": 768, "vocab_size": 50277, "ffn_dim": 3072}
    assert config["dtype"] == dtype_name
    assert report["ok_layout"]
    table = name_table(12, naming)
    assert report["crc32"] == checksums, [k for k in table if report["crc32"][k] != checksums[k]]

    fp32 = report["fp32_bytes"]
    assert fp32 == 169_342_464 * 4
    ratio = report["over_baseline"] / fp32
    print(f"{file_name}: peak RSS over baseline {report['over_baseline'] / 2**20:.0f} MiB "
          f"= {ratio:.3f} x the float32 size")
    # the result alone is 1.0x; a loader that read the whole file first would be 2x (bf16) / 3x (fp32)
    assert 0.9 < ratio <= MAX_PEAK_OVER_FP32
