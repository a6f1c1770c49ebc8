"""``tinyrwkv grade`` on a folder of submissions built here: right, wrong, erroring, endlessly looping,
unreadable, and a jupytext .py; each runs in its own kernel (never in this process), and the grade
table (CSV and Markdown) holds one row per exercise, FAIL/TIMEOUT/NOT RUN/ERROR rows included."""
import csv
import os

import pytest

from tinyrwkv import cli
from tinyrwkv.grading import exercises_only, lesson_of

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")

SETUP = "import numpy as np\nfrom tinyrwkv.exercises import check"
RIGHT = {
    "state_floats": "def state_floats(L, C, T):\n"
                    "    return {'rnn': L * C, 'lstm': 2 * L * C, 'gpt_kv_cache': 2 * L * T * C, 'rwkv': 5 * L * C}",
    "flops_per_token": "def flops_per_token(L, C, T):\n"
                       "    return {'gpt_kv_cache': 2 * L * (12 * C * C + 2 * T * C), 'rwkv': 2 * L * 13 * C * C}",
    "kv_cache_bytes": "def kv_cache_bytes(L, C, T, batch, nbytes):\n    return 2 * L * T * C * batch * nbytes",
}


def notebook(cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for source, tagged in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tagged:
            cell.metadata["tags"] = ["exercise"]
        nb.cells.append(cell)
    return nb


def exercise_cells(answers):
    return [(f"{src}\ncheck.{name}({name})", True) for name, src in answers.items()]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    sub = tmp_path_factory.mktemp("submissions")
    out = tmp_path_factory.mktemp("grades")
    wrong = dict(RIGHT, kv_cache_bytes="def kv_cache_bytes(L, C, T, batch, nbytes):\n    return L * T * C * batch * nbytes")
    pid_file = sub / "pid.txt"
    nbformat.write(notebook([(SETUP, False), (f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))",
                                              False)] + exercise_cells(RIGHT)), sub / "alice_09_cost.ipynb")
    nbformat.write(notebook([(SETUP, False)] + exercise_cells(wrong)), sub / "bob_09.ipynb")
    nbformat.write(notebook([(SETUP, False), ("raise RuntimeError('my set-up is broken')", False)]
                            + exercise_cells({"kv_cache_bytes": "kv_cache_bytes = undefined_name"})),
                   sub / "carol_09.ipynb")
    nbformat.write(notebook([(SETUP, False)] + exercise_cells({"kv_cache_bytes": RIGHT["kv_cache_bytes"]})
                            + [("while True:\n    pass", True)] + exercise_cells({"state_floats": RIGHT["state_floats"]})),
                   sub / "dave_09.ipynb")
    (sub / "erin_09.ipynb").write_text("{ this is not a notebook")
    jupytext.write(notebook([(SETUP, False)] + exercise_cells(RIGHT)), sub / "frank_09.py", fmt="py:percent")
    status = cli.main(["grade", str(sub), "--out", str(out), "--timeout", "10"])
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    table = {(r["student_file"].split("_")[0], r["exercise"]): r for r in rows}
    return status, rows, table, out, int(pid_file.read_text())


def test_one_row_per_student_and_exercise(graded):
    status, rows, table, out, _ = graded
    assert status == 0
    assert list(rows[0]) == ["student_file", "lesson", "exercise", "result", "hint"]
    assert {s for s, _ in table} == {"alice", "bob", "carol", "dave", "erin", "frank"}
    assert len(rows) == 6 * 3 and all(r["lesson"] == "09" for r in rows)
    md = (out / "grades.md").read_text()
    assert md.startswith("| student_file | lesson | exercise | result | hint |")
    assert md.count("\n| ") == len(rows) and "passed." in md


def test_right_answers_pass_in_ipynb_and_jupytext_py(graded):
    _, _, table, _, _ = graded
    for student in ("alice", "frank"):
        for name in RIGHT:
            assert table[student, name]["result"] == "PASS", table[student, name]


def test_a_wrong_answer_fails_with_the_checks_hint(graded):
    _, _, table, _, _ = graded
    row = table["bob", "kv_cache_bytes"]
    assert row["result"] == "FAIL" and "keys AND values" in row["hint"]
    assert table["bob", "state_floats"]["result"] == "PASS"


def test_an_erroring_submission_gives_not_run_rows_naming_the_error(graded):
    _, _, table, _, _ = graded
    for name in RIGHT:
        row = table["carol", name]
        assert row["result"] == "NOT RUN" and "RuntimeError: my set-up is broken" in row["hint"], row


def test_an_endless_loop_is_stopped_and_what_ran_before_it_counts(graded):
    _, _, table, _, _ = graded
    assert table["dave", "kv_cache_bytes"]["result"] == "PASS"
    for name in ("state_floats", "flops_per_token"):
        assert table["dave", name]["result"] == "TIMEOUT" and "time limit of 10 s" in table["dave", name]["hint"]


def test_an_unreadable_file_gives_error_rows(graded):
    _, _, table, _, _ = graded
    assert all(table["erin", n]["result"] == "ERROR" and "could not read" in table["erin", n]["hint"] for n in RIGHT)


def test_submissions_never_run_in_the_graders_process(graded):
    *_, kernel_pid = graded
    assert kernel_pid != os.getpid()


def test_exercises_only_skips_the_lessons_slow_cells():
    nb = notebook([("import time\nfrom tinyrwkv.nn import functional as F\ntime.sleep(1000)", False),
                   ("def f(): pass\ncheck.f(f)", True)])
    out = exercises_only(nb)
    assert [c.source for c in out.cells][1:] == ["def f(): pass\ncheck.f(f)"]
    setup = out.cells[0].source
    assert "import time" in setup and "from tinyrwkv.nn import functional as F" in setup and "sleep" not in setup


def test_lesson_from_file_name():
    from pathlib import Path
    assert lesson_of(Path("06_attention_to_rwkv.ipynb")) == "06"
    assert lesson_of(Path("alice_11.py")) == "11"
    assert lesson_of(Path("notes.ipynb")) is None


def test_no_submissions_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["grade", str(tmp_path), "--out", str(tmp_path / "g")]) == 2
    assert "no .ipynb or .py submissions" in capsys.readouterr().err
