"""Builds the student handout: the course without its solutions (and without the tests, which hold
right answers of their own), as a folder or a .zip.

    python scripts/make_student_copy.py --out ../tinyrwkv-student            # a folder
    python scripts/make_student_copy.py --out tinyrwkv-student.zip           # a zip file

From a git checkout it exports the committed tree (``git archive HEAD``: uncommitted changes are NOT
included, and notebooks are as committed, without outputs); elsewhere it copies the files. Either way
it leaves out EXCLUDED and then checks that no solutions file made it into the copy.
The same exclusions are marked ``export-ignore`` in .gitattributes, so a plain
``git archive --format=zip -o student.zip HEAD`` gives the same handout.
"""
from __future__ import annotations

import argparse
import io
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXCLUDED = ("lessons/solutions", "tests", ".ci")        # solutions, and the tests' own right answers


def _excluded(rel: str) -> bool:
    return any(rel == e or rel.startswith(e + "/") for e in EXCLUDED) or "__pycache__" in rel.split("/")


def files_from_git(root: pathlib.Path) -> dict[str, bytes] | None:
    """path -> bytes of the committed tree (HEAD), or None outside a git checkout."""
    try:
        tar = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", "HEAD"], check=True,
                             capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t.getmembers():
            if m.isfile():
                out[m.name] = t.extractfile(m).read()
    return out


def files_from_tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def student_files(root: pathlib.Path = ROOT) -> dict[str, bytes]:
    """Every file of the handout: path -> bytes."""
    files = files_from_git(root)
    if files is None:
        files = files_from_tree(root)
    kept = {path: data for path, data in files.items() if not _excluded(path)}
    leaked = [p for p in kept if "solution" in p.lower()]
    if leaked:
        raise SystemExit(f"make_student_copy: refusing, these look like solutions: {leaked}")
    return kept


def write(files: dict[str, bytes], out: pathlib.Path) -> None:
    if out.suffix == ".zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for path, data in sorted(files.items()):
                z.writestr(f"tinyrwkv/{path}", data)
        return
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"make_student_copy: {out} exists and is not empty; choose a new folder")
    for path, data in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    shutil.copymode(ROOT / "scripts" / "make_student_copy.py", out / "scripts" / "make_student_copy.py") \
        if (out / "scripts" / "make_student_copy.py").exists() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="a new folder, or a path ending in .zip")
    args = parser.parse_args(argv)
    files = student_files()
    write(files, args.out)
    print(f"wrote {len(files)} files to {args.out} (left out: {', '.join(EXCLUDED)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
