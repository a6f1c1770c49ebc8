"""``tinyrwkv grade``: run students' notebooks and collect every exercise check into one grade table.

    tinyrwkv grade submissions/ --out grades/ --timeout 300
    tinyrwkv grade alice/06_attention_to_rwkv.ipynb bob/06_attention_to_rwkv.py --exercises-only

Each submission (a lesson notebook ``.ipynb``, or its jupytext ``.py``) runs in a FRESH Jupyter kernel,
a separate process: nothing a student wrote ever executes in the grader's process. The kernel is given
``$TINYRWKV_CHECK_LOG`` (see ``tinyrwkv.exercises._checker``), so every ``check.NAME(fn)`` it runs
appends one JSON line {"exercise", "lesson", "ok", "message"}; the grader reads them back after the
kernel is gone. A submission gets ``timeout`` seconds in all; past that its kernel is killed.

Every exercise of the submission's lesson gets one row (the last check of it that ran counts):

    student file | lesson | exercise | result | hint

result is PASS or FAIL (the check's verdict, the hint its message), NOT RUN (its check never ran:
the hint says why, e.g. the cell that raised), TIMEOUT (the time limit ended the run before it), or
ERROR (the submission could not be run at all: unreadable file, kernel died). A broken, erroring or
endlessly looping submission gives rows, never a crash. The table is written as ``grades.csv`` and
``grades.md`` in the output folder.

``--exercises-only`` runs only the cells tagged ``exercise`` (after the import statements of the
others), which is much faster than whole lessons that train or load models.

Note what this does not protect against: a student's code runs with the same file-system rights
as the kernel, so it could write records itself. For a graded exam, rerun the PASS rows you doubt.
"""
from __future__ import annotations

import ast
import csv
import json
import os
import pathlib
import re
import tempfile
import time
from dataclasses import asdict, dataclass

COLUMNS = ("student_file", "lesson", "exercise", "result", "hint")
DEFAULT_TIMEOUT_S = 600.0


@dataclass
class Row:
    student_file: str
    lesson: str
    exercise: str
    result: str          # PASS, FAIL, NOT RUN, TIMEOUT, ERROR
    hint: str


class GradingError(Exception):
    """Something the teacher can fix: no submissions found, a missing dependency."""


# --------------------------------------------------------------------------- finding and reading submissions


def find_submissions(paths) -> list[pathlib.Path]:
    """The .ipynb and .py files named, or found (recursively) in the folders named, sorted; the
    ``.ipynb_checkpoints`` folders Jupyter leaves behind are skipped."""
    found = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            found += [f for f in p.rglob("*") if f.suffix in (".ipynb", ".py") and f.is_file()
                      and ".ipynb_checkpoints" not in f.parts]
        elif p.is_file():
            found.append(p)
        else:
            raise GradingError(f"{p}: no such file or folder")
    if not found:
        raise GradingError(f"no .ipynb or .py submissions in {', '.join(map(str, paths))}")
    return sorted(set(found))


def lesson_of(path: pathlib.Path) -> str | None:
    """The two-digit lesson number in the file name ("06_attention_to_rwkv.ipynb", "alice_06.py"), or None."""
    m = re.search(r"(?:^|[^0-9])(\d\d)(?:_|[^0-9]|$)", path.stem)
    return m.group(1) if m else None


def read_notebook(path: pathlib.Path):
    """A submission as an nbformat notebook: .ipynb as it is, .py through jupytext (percent format)."""
    nbformat = _require("nbformat")
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    jupytext = _require("jupytext")
    return jupytext.read(path, fmt="py:percent")


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise GradingError(f"tinyrwkv grade needs {module}: pip install 'tinyrwkv[teach]'") from None


def exercises_only(nb):
    """A copy of ``nb`` with a set-up cell (every top-level import of the other code cells, then the
    checks), followed by the cells tagged ``exercise``."""
    nbformat = _require("nbformat")
    imports = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "exercise" in cell.metadata.get("tags", []):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        imports += [ast.get_source_segment(cell.source, node) for node in tree.body
                    if isinstance(node, (ast.Import, ast.ImportFrom))]
    setup = "\n".join(["import numpy as np", *imports, "from tinyrwkv.exercises import check"])
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    out.cells = [nbformat.v4.new_code_cell(setup)] + [c for c in nb.cells if c.cell_type == "code"
                                                      and "exercise" in c.metadata.get("tags", [])]
    return out


# --------------------------------------------------------------------------- running one submission


def run_submission(path: pathlib.Path, timeout: float = DEFAULT_TIMEOUT_S, only_exercises: bool = False,
                   env: dict | None = None) -> tuple[list[dict], str | None, str | None]:
    """Runs one submission in a fresh kernel. Returns (check records, status, detail): status None
    (it ran to the end), "TIMEOUT", or "ERROR"; detail says what happened (the first cell error, if any)."""
    nbclient = _require("nbclient")
    try:
        nb = read_notebook(path)
    except GradingError:
        raise
    except Exception as e:                                   # not a notebook, bad JSON, bad jupytext
        return [], "ERROR", f"could not read the submission: {type(e).__name__}: {e}"
    if only_exercises:
        nb = exercises_only(nb)
    with tempfile.TemporaryDirectory(prefix="tinyrwkv-grade-") as tmp:
        log = pathlib.Path(tmp) / "checks.jsonl"
        log.touch()
        deadline = time.monotonic() + timeout
        client = nbclient.NotebookClient(
            nb, kernel_name="python3", allow_errors=True, shutdown_kernel="immediate",
            timeout_func=lambda cell: max(1.0, deadline - time.monotonic()),
            resources={"metadata": {"path": str(path.parent.resolve())}})
        status, detail = None, None
        saved = dict(os.environ)
        # the kernel imports the same tinyrwkv (and so the same checks) as the grader
        package_root = str(pathlib.Path(__file__).resolve().parents[1])
        pythonpath = os.pathsep.join([package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        os.environ.update({"TINYRWKV_CHECK_LOG": str(log), "MPLBACKEND": "Agg", "PYTHONPATH": pythonpath,
                           **(env or {})})
        try:                                                 # the kernel inherits this environment
            client.execute()
        except nbclient.exceptions.CellTimeoutError:
            status, detail = "TIMEOUT", f"stopped after the time limit of {timeout:g} s (an endless loop?)"
        except nbclient.exceptions.DeadKernelError as e:
            status, detail = "ERROR", f"the kernel died: {e}"
        except Exception as e:                               # a kernel that would not start, and the like
            status, detail = "ERROR", f"could not run the submission: {type(e).__name__}: {e}"
        finally:
            os.environ.clear()
            os.environ.update(saved)
        if status is None:
            detail = _first_error(nb)
        records = []
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                r = json.loads(line)
                records.append({"exercise": str(r["exercise"]), "lesson": str(r["lesson"]), "ok": bool(r["ok"]),
                                "message": str(r["message"])})
            except (ValueError, KeyError, TypeError):
                continue                                     # a malformed line counts as nothing
    return records, status, detail


def _first_error(nb) -> str | None:
    """'cell N raised Name: value' for the first code cell whose outputs hold an error, else None."""
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"code cell {i + 1} raised {out.get('ename')}: {out.get('evalue')}"[:300]
    return None


# --------------------------------------------------------------------------- the table


def rows_for(path: pathlib.Path, records, status, detail, shown_as: str) -> list[Row]:
    """One row per exercise of the submission's lesson (and per other exercise it checked)."""
    from .exercises import EXERCISES

    lesson = lesson_of(path) or (records[-1]["lesson"] if records else None)
    expected = [name for name, (lsn, _) in EXERCISES.items() if lsn == lesson]
    last = {}
    for r in records:
        last[r["exercise"]] = r                              # the last check of an exercise counts
    rows = []
    for name in expected + [n for n in last if n not in expected]:
        if name in last:
            r = last[name]
            rows.append(Row(shown_as, r["lesson"], name, "PASS" if r["ok"] else "FAIL", r["message"]))
        elif status in ("TIMEOUT", "ERROR"):
            rows.append(Row(shown_as, lesson or "?", name, status, detail or ""))
        else:
            why = f"its check never ran ({detail})" if detail else "its check never ran (no check.%s call)" % name
            rows.append(Row(shown_as, lesson or "?", name, "NOT RUN", why))
    if not rows:
        rows.append(Row(shown_as, lesson or "?", "(none)", status or "NOT RUN",
                        detail or "no exercise check ran, and the file name names no lesson (NN_...)"))
    return rows


def write_tables(rows: list[Row], out_dir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """grades.csv and grades.md in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "grades.csv", out_dir / "grades.md"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(getattr(r, c)) for c in COLUMNS) + " |" for r in rows]
    passed = sum(r.result == "PASS" for r in rows)
    lines += ["", f"{passed} of {len(rows)} exercises passed."]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


def grade(paths, out_dir, timeout: float = DEFAULT_TIMEOUT_S, only_exercises: bool = False,
          progress=print) -> list[Row]:
    """Grades every submission found in ``paths`` (see the module docstring); writes the tables to
    ``out_dir`` and returns the rows."""
    subs = find_submissions(paths)
    base = os.path.commonpath([str(p.resolve().parent) for p in subs])
    rows = []
    for path in subs:
        shown_as = os.path.relpath(path.resolve(), base)
        t0 = time.monotonic()
        records, status, detail = run_submission(path, timeout, only_exercises)
        got = rows_for(path, records, status, detail, shown_as)
        rows += got
        if progress:
            progress(f"{shown_as}: {sum(r.result == 'PASS' for r in got)}/{len(got)} passed"
                     + (f", {status}" if status else "") + f" ({time.monotonic() - t0:.1f} s)")
    write_tables(rows, pathlib.Path(out_dir))
    return rows


# --------------------------------------------------------------------------- command line


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", type=pathlib.Path, help="submitted .ipynb / jupytext .py files, or folders")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("grades"),
                   help="folder for grades.csv and grades.md (default: grades/)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds per submission, all cells together (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--exercises-only", action="store_true",
                   help="run only the cells tagged 'exercise' (after the notebook's imports)")


def run_from_args(args) -> int:
    if args.timeout <= 0:
        raise GradingError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    rows = grade(args.paths, args.out, args.timeout, args.exercises_only)
    passed = sum(r.result == "PASS" for r in rows)
    print(f"{passed} of {len(rows)} exercises passed; wrote {args.out / 'grades.csv'} and {args.out / 'grades.md'}")
    return 0
