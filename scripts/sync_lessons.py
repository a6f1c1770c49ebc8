"""Regenerates lessons/NN_topic.ipynb from the jupytext source lessons/NN_topic.py (outputs stripped).

    python scripts/sync_lessons.py            # all lessons
    python scripts/sync_lessons.py 06         # only lesson 06
"""
import pathlib
import sys

import jupytext

LESSONS = pathlib.Path(__file__).resolve().parents[1] / "lessons"


def main(argv):
    for src in sorted(LESSONS.glob("[0-9][0-9]_*.py")):
        if argv and not any(src.name.startswith(a) for a in argv):
            continue
        nb = jupytext.read(src)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata.pop("jupytext", None)
        for i, cell in enumerate(nb.cells):      # stable ids keep the .ipynb diff small
            cell.id = f"{src.stem[:2]}-{i:03d}"
            cell.metadata.pop("lines_to_next_cell", None)
        jupytext.write(nb, src.with_suffix(".ipynb"))
        print("wrote", src.with_suffix(".ipynb").relative_to(LESSONS.parent))


if __name__ == "__main__":
    main(sys.argv[1:])
