"""The app repository the tool runs in: its root (found from any subfolder), and its .gitignore.

The root is the nearest folder, from the working directory up, holding `.git` or
`pyproject.toml`; without one, the working directory itself. `.env` and a relative `BACKUP_DIR`
are resolved there, so `invoke backup` from `app/src/` uses `app/.env` and `app/.backups/`.

Whether `.gitignore` already covers a path is decided by gitignore's own rules (pathspec's
GitIgnoreSpec, which follows git's matching): `.backups/*`, `/.backups`, `**/.backups/`,
`.env*` or `*.env` all count, so no second line is added for what is already ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

MARKERS = (".git", "pyproject.toml")


def find_root(start: Path) -> Path:
    """The nearest folder from `start` up with `.git` or `pyproject.toml`, else `start`."""
    start = Path(start).absolute()
    for folder in (start, *start.parents):
        if any((folder / m).exists() for m in MARKERS):
            return folder
    return start


def _relative(path: Path, root: Path) -> str | None:
    """`path` relative to `root` in git's form, or None when it lies outside the root."""
    try:
        rel = Path(os.path.relpath(Path(path).absolute().resolve(), root.absolute().resolve()))
    except ValueError:  # another drive
        return None
    if not rel.parts or rel.parts[0] == "..":
        return None
    return rel.as_posix()


def ignored(root: Path, rel: str, *, folder: bool) -> bool:
    """Does the root's .gitignore already keep `rel` (and, for a folder, everything in it) out of git?"""
    gitignore = root / ".gitignore"
    try:
        lines = gitignore.read_text(errors="replace").splitlines() if gitignore.is_file() else []
    except OSError:
        return False
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    if folder:
        # a folder is covered when what will be written in it is: `.backups/` and `.backups/*` alike
        return spec.match_file(f"{rel}/") or spec.match_file(f"{rel}/2026-01-01T000000Z/manifest.json")
    return spec.match_file(rel)


def ensure_ignored(root: Path, backup_dir: Path) -> list[str]:
    """Add `.env` and the backup folder to the root's .gitignore unless already covered; the
    lines added (none for a backup folder outside the repository)."""
    wanted: list[tuple[str, bool]] = []
    rel = _relative(backup_dir, root)
    if rel is not None:
        wanted.append((rel, True))
    wanted.append((".env", False))
    added: list[str] = []
    for name, folder in wanted:
        if ignored(root, name, folder=folder):
            continue
        entry = name + ("/" if folder else "")
        gitignore = root / ".gitignore"
        text = gitignore.read_text(errors="replace") if gitignore.is_file() else ""
        with open(gitignore, "a") as f:
            if text and not text.endswith("\n"):
                f.write("\n")
            f.write(entry + "\n")
        added.append(entry)
    return added
