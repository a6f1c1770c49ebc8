"""The teacher's kit: the student handout leaves the solutions (and the tests' right answers) out, and
lessons/TEACHING.md plans every lesson and documents the commands it tells a teacher to run."""
import pathlib
import zipfile

from exercise_checks import LESSONS, load_module

ROOT = LESSONS.parent
COPY = load_module(ROOT / "scripts" / "make_student_copy.py")
TEACHING = LESSONS / "TEACHING.md"


def test_student_copy_has_the_lessons_and_the_library_but_no_solutions_or_tests(tmp_path):
    files = COPY.student_files(ROOT)
    assert not [p for p in files if p.startswith(("lessons/solutions/", "tests/"))]
    for lesson in sorted(LESSONS.glob("[0-9][0-9]_*.py")):
        if f"lessons/{lesson.name}" in files:           # committed lessons (the copy is of HEAD)
            assert f"lessons/{lesson.stem}.ipynb" in files
    assert "tinyrwkv/exercises/_checker.py" in files and "pyproject.toml" in files
    COPY.write(files, tmp_path / "student.zip")
    names = zipfile.ZipFile(tmp_path / "student.zip").namelist()
    assert len(names) == len(files) and not any("solutions" in n for n in names)


def test_gitattributes_keeps_git_archive_in_line_with_the_script():
    marked = {line.split()[0] for line in (ROOT / ".gitattributes").read_text().splitlines()
              if line.strip() and not line.startswith("#") and "export-ignore" in line}
    assert marked == set(COPY.EXCLUDED)


def test_teaching_plan_covers_every_lesson_and_names_real_commands():
    text = TEACHING.read_text()
    for lesson in sorted(LESSONS.glob("[0-9][0-9]_*.py")):
        if int(lesson.name[:2]) <= 11:
            assert lesson.stem in text, f"TEACHING.md does not plan {lesson.stem}"
    for command in ("tinyrwkv grade", "scripts/make_student_copy.py", "--exercises-only", "git archive"):
        assert command in text
