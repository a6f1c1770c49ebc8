"""What refusing NaN/inf weights costs at load time, at RWKV-4 169M shapes.

    python scripts/bench_load_checks.py                  # fp32 safetensors, 5 rounds
    python scripts/bench_load_checks.py --dtype bf16 --rounds 7

Writes random weights of the real 169M shapes once (as an HF folder, like RWKV/rwkv-4-169m-pile),
then loads them with ``read_checkpoint`` alternately with the check (the default) and without it
(``allow_nonfinite=True``), the page cache warm for both. Prints the median wall and CPU seconds of
each and their ratio, and the check's own CPU time measured directly on the loaded arrays
(first_nonfinite). On a shared, oversubscribed machine wall times are noise: CPU time (user +
system, of this process only) is the steadier figure, and the check's own time the cleanest.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from tinyrwkv.bench import REAL_169M, write_checkpoints  # noqa: E402
from tinyrwkv.checkpoints import read_checkpoint  # noqa: E402
from tinyrwkv.checkpoints.tensors import first_nonfinite  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="alternating load pairs (default 5)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="stored dtype (default fp32)")
    p.add_argument("--workdir", default=None, help="where to write the checkpoint (default: a temp dir)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = write_checkpoints(pathlib.Path(tmp), REAL_169M, want_pth=False)["hf"]
        if args.dtype == "bf16":
            from safetensors.numpy import load_file, save_file
            tensors = load_file(str(folder / "model.safetensors"))
            # bfloat16 = the top 16 bits of a float32 (safetensors' numpy API has no bf16: write the words)
            save_file({k: (v.view(np.uint32) >> 16).astype(np.uint16) for k, v in tensors.items()},
                      str(folder / "model.safetensors"))
            import json
            raw = (folder / "model.safetensors").read_bytes()
            n = int.from_bytes(raw[:8], "little")
            header = json.loads(raw[8:8 + n])
            for k, v in header.items():
                if k != "__metadata__":
                    v["dtype"] = "BF16"
            text = json.dumps(header).encode()
            text += b" " * (-len(text) % 8)
            (folder / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
        read_checkpoint(folder, progress=False)                  # warm the page cache
        times = {"checked": [], "unchecked": []}
        cpu = {"checked": [], "unchecked": []}
        for _ in range(args.rounds):
            for label, allow in (("checked", False), ("unchecked", True)):
                params = None                                    # free the last copy before timing
                start, start_cpu = time.perf_counter(), time.process_time()
                _, params = read_checkpoint(folder, progress=False, allow_nonfinite=allow)
                times[label].append(time.perf_counter() - start)
                cpu[label].append(time.process_time() - start_cpu)
        check_only = []
        for _ in range(args.rounds):
            start = time.process_time()
            assert all(first_nonfinite(a) is None for a in params.values())
            check_only.append(time.process_time() - start)
        check_only = statistics.median(check_only)
    n = sum(a.size for a in params.values())
    checked, unchecked = statistics.median(times["checked"]), statistics.median(times["unchecked"])
    print(f"RWKV-4 169M shapes, {n:,} parameters stored as {args.dtype}, {args.rounds} alternating rounds")
    cpu_checked, cpu_unchecked = statistics.median(cpu["checked"]), statistics.median(cpu["unchecked"])
    print(f"                                  wall (median)   CPU time (median)")
    print(f"  load with the NaN/inf check     {checked:7.3f} s       {cpu_checked:7.3f} s")
    print(f"  load with allow_nonfinite=True  {unchecked:7.3f} s       {cpu_unchecked:7.3f} s")
    print(f"  ratio checked / unchecked       {checked / unchecked:7.3f}         {cpu_checked / cpu_unchecked:7.3f}")
    print(f"  the check alone on the arrays                   {check_only:7.3f} s "
          f"({n * 4 / max(check_only, 1e-9) / 1e9:.1f} GB/s of float32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
