"""Running a reader on a hostile file where a crash cannot take pytest down with it.

``run_isolated("from tinyrwkv.checkpoints import read_checkpoint; read_checkpoint(PATH, progress=False)",
path)`` runs the snippet in a fresh Python with its address space capped (RLIMIT_AS) and a wall-clock
timeout, and returns what happened: the exception type and message (or None), the CPU seconds the
snippet took (CPU, not wall: a bound on the work must not fail because the machine is busy), the child's peak resident memory, and the exit status (negative = killed by a
signal, e.g. -11 for a segfault). A segfault, a hang or a blow-up becomes a test failure with a
clear message instead of the end of the test run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
from typing import Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Both children start the same way: cap the address space (argv[1] MiB), and read their own peak memory.
_PRELUDE = r"""
import json, os, resource, sys, time
limit = int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def peak_mb():
    # VmHWM: this process image's peak RSS. (ru_maxrss would include the parent's, inherited across fork + exec.)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

_CHILD = _PRELUDE + r"""PATH = sys.argv[2]
result = {"error_type": None, "error_module": None, "message": None}
import numpy, tinyrwkv.errors                     # imported before the clock starts
exec(compile(sys.argv[4], "<setup>", "exec"))     # e.g. the imports the snippet needs, also before it
result["baseline_mb"] = peak_mb()                 # the peak before the snippet: what it adds is on top
start = time.process_time()                      # CPU seconds: a busy machine does not move them
try:
    exec(compile(sys.argv[3], "<snippet>", "exec"))
except BaseException as e:
    result.update(error_type=type(e).__name__, error_module=type(e).__module__, message=str(e)[:2000],
                  is_ours=isinstance(e, tinyrwkv.errors.TinyRWKVError))
result["seconds"] = time.process_time() - start
result["maxrss_mb"] = peak_mb()
print("RESULT " + json.dumps(result))
"""


@dataclasses.dataclass
class Outcome:
    returncode: int
    error_type: Optional[str]
    is_ours: bool
    message: Optional[str]
    seconds: float
    maxrss_mb: float
    stderr: str
    baseline_mb: float = float("nan")

    @property
    def added_mb(self) -> float:
        """Peak resident memory above the peak before the snippet ran."""
        return self.maxrss_mb - self.baseline_mb

    def describe(self) -> str:
        return (f"rc={self.returncode} {self.error_type}: {self.message!s:.300} "
                f"({self.seconds:.2f} s, {self.maxrss_mb:.0f} MB) stderr: {self.stderr[-500:]}")


def run_isolated(snippet: str, path, *, mem_mb: int = 1536, timeout: float = 60, setup: str = "") -> Outcome:
    """Runs ``snippet`` (PATH is the file's path as a str) in a capped child; see the module docstring.
    ``setup`` runs first, outside the clock; ``Outcome.added_mb`` is the peak memory the snippet added."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(mem_mb), str(path), snippet, setup],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return Outcome(124, "Timeout", False, f"no answer within {timeout} s", timeout, float("nan"), "")
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        return Outcome(proc.returncode, "Crash", False, f"the child died (exit status {proc.returncode})",
                       float("nan"), float("nan"), proc.stderr)
    r = json.loads(line[len("RESULT "):])
    return Outcome(proc.returncode, r["error_type"], bool(r.get("is_ours")), r["message"], r["seconds"],
                   r["maxrss_mb"], proc.stderr, r.get("baseline_mb", float("nan")))


_MANY = _PRELUDE + r"""cases = json.loads(open(sys.argv[2]).read())
import numpy, tinyrwkv.errors
exec(compile(sys.argv[3], "<setup>", "exec"))      # defines run(path)
for path in cases:
    start = time.process_time()
    result = {"path": path, "error_type": None, "message": None, "is_ours": False}
    try:
        run(path)
    except BaseException as e:
        result.update(error_type=type(e).__name__, message=str(e)[:2000],
                      is_ours=isinstance(e, tinyrwkv.errors.TinyRWKVError))
    result["seconds"] = time.process_time() - start
    result["maxrss_mb"] = peak_mb()
    print("RESULT " + json.dumps(result), flush=True)
"""


def run_many(setup: str, paths, *, mem_mb: int = 1536, timeout: float = 120):
    """Runs ``run(path)`` (defined by ``setup``) on each path in ONE capped child; returns
    {path: Outcome}. ``maxrss_mb`` is the child's peak so far, so it bounds every case up to that one.
    A crash ends the child: the paths not reached are missing from the result (a test failure)."""
    import tempfile
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([str(p) for p in paths], f)
    try:
        proc = subprocess.run([sys.executable, "-c", _MANY, str(mem_mb), f.name, setup],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT))
    finally:
        os.unlink(f.name)
    outcomes = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            outcomes[r["path"]] = Outcome(proc.returncode, r["error_type"], r["is_ours"], r["message"],
                                          r["seconds"], r["maxrss_mb"], "")
    if len(outcomes) < len(paths):
        last = list(outcomes)[-1] if outcomes else None
        raise AssertionError(f"the child died (exit status {proc.returncode}) after {last}: {proc.stderr[-1500:]}")
    return outcomes
