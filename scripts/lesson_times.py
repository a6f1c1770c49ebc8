"""Estimates how long a learner needs for each lesson, and writes it into the lesson's "Time." line.

    python scripts/lesson_times.py                 # print the table
    python scripts/lesson_times.py --write         # also put the estimates into lessons/NN_*.py

The estimate, stated in every lesson's Objectives / Prerequisites / Time box:

    reading  = words of the lesson's text above "## Exercises" / 150 words a minute
             + lines of its code cells above "## Exercises" / 15 lines a minute
    running  = the lesson's run time in full mode (TINYRWKV_FAST unset) on a 2-core CPU, measured
               with nbclient and stored in RUN_SECONDS below (re-measure with --measure NN ...;
               run it with this checkout's tinyrwkv, which --measure puts on PYTHONPATH)
    exercises = 10 minutes per exercise cell (a first attempt with the hints; more if it is new)

Reading rates are those of careful technical reading, not skimming; they are the assumption to change
if your learners differ. After --write, run scripts/sync_lessons.py.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys
import time

LESSONS = pathlib.Path(__file__).resolve().parents[1] / "lessons"
WORDS_PER_MIN, CODE_LINES_PER_MIN, MIN_PER_EXERCISE = 150, 15, 10

# Full-mode run time of each notebook, seconds, measured with `--measure` on the development machine
# (2 cores shared with other jobs, load average 30-70 while measuring: an upper bound; one run each).
RUN_SECONDS = {"00": 12, "01": 30, "02": 87, "03": 170, "04": 114, "05": 169, "06": 15, "07": 22,
               "08": 47, "09": 38, "10": 530, "11": 115, "12": 122}


def cells(source: str):
    """(kind, text) for each percent-format cell of a jupytext source, header dropped."""
    parts = re.split(r"^# %%(.*)$", source, flags=re.M)
    for i in range(1, len(parts), 2):
        kind = "markdown" if "[markdown]" in parts[i] else ("exercise" if "exercise" in parts[i] else "code")
        yield kind, parts[i + 1]


def estimate(path: pathlib.Path) -> dict:
    """Words, code lines and exercises of one lesson (above its Exercises heading), and the minutes."""
    words = code_lines = exercises = 0
    reading = True                                   # False from the "## Exercises" heading on
    for kind, text in cells(path.read_text()):
        if kind == "exercise":
            exercises += 1
        elif kind == "markdown" and reading:
            if "## Exercises" in text:
                text, reading = text[:text.index("## Exercises")], False
            body = re.sub(r"^# ?", "", text, flags=re.M)
            body = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " x ", body, flags=re.S)     # a formula reads as a word
            words += len(re.findall(r"[A-Za-z0-9][\w'-]*", body))
        elif kind == "code" and reading:
            code_lines += sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))
    nn = path.name[:2]
    reading_min = words / WORDS_PER_MIN + code_lines / CODE_LINES_PER_MIN
    running = RUN_SECONDS.get(nn, 0) / 60
    return {"lesson": nn, "words": words, "code_lines": code_lines, "exercises": exercises,
            "reading_min": reading_min, "running_min": running, "exercise_min": MIN_PER_EXERCISE * exercises,
            "total_min": reading_min + running + MIN_PER_EXERCISE * exercises}


def round5(minutes: float) -> int:
    return max(5, int(5 * round(minutes / 5)))


def time_line(e: dict) -> str:
    """The text after "**Time.**" in a lesson's box (two lines of the source)."""
    return (f"about {round5(e['total_min'])} minutes: reading {round5(e['reading_min'])} "
            f"({e['words']:,} words, {e['code_lines']} lines of code),\n# > running "
            f"{max(1, round(e['running_min']))} (full mode, measured), exercises {e['exercise_min']} "
            f"({e['exercises']} x 10). How these are estimated: lesson 00.")


def measure(nn: str) -> float:
    """Runs lessons/NN_*.ipynb in full mode with nbclient; returns seconds."""
    import nbclient
    import nbformat
    path = next(LESSONS.glob(f"{nn}_*.ipynb"))
    env = {k: v for k, v in os.environ.items() if k != "TINYRWKV_FAST"}
    os.environ.clear()
    os.environ.update(env, MPLBACKEND="Agg", PYTHONPATH=str(LESSONS.parent))   # this checkout's tinyrwkv
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(LESSONS)}}).execute()
    return time.perf_counter() - t0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the Time line into each lesson source")
    parser.add_argument("--measure", nargs="*", metavar="NN", help="run these lessons in full mode and print seconds")
    args = parser.parse_args(argv)
    if args.measure is not None:
        for nn in args.measure:
            print(f"{nn}: {measure(nn):.0f} s in full mode", flush=True)
        return
    for path in sorted(LESSONS.glob("[0-9][0-9]_*.py")):
        e = estimate(path)
        if e["lesson"] not in RUN_SECONDS:
            print(f"{e['lesson']}  not measured yet: run --measure {e['lesson']} and add it to RUN_SECONDS")
            continue
        print(f"{e['lesson']}  {time_line(e)}")
        if args.write:
            text = path.read_text()
            new = re.sub(r"(# > \*\*Time\.\*\* ).*?(?=\n# >\n|\n#\n)", lambda m: m.group(1) + time_line(e),
                         text, count=1, flags=re.S)
            path.write_text(new)


if __name__ == "__main__":
    main(sys.argv[1:])
