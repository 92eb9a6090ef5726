"""Atomic writes of whole folders (model exports, checkpoints, imported models).

A folder is written under a hidden temporary sibling, ``<parent>/.<name>.tmp-<pid>``, and renamed
onto its final path only when everything in it has been written. A crash or exception mid-write
therefore never leaves a half-written folder at the final path: readers see either nothing, the old
folder (with ``overwrite=True``), or the complete new one. The temporary folder is a sibling, so the
final rename stays on one file system and is a single ``rename(2)``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alignrl.errors import UserError


def _temp_sibling(final: Path, tag: str) -> Path:
    return final.parent / f".{final.name}.{tag}-{os.getpid()}"


def abandoned_writes(folder: str | os.PathLike[str]) -> list[Path]:
    """Temporary folders ``atomic_dir`` left in ``folder`` when its process was killed mid-write (never one of a
    process still alive)."""
    out = []
    for path in sorted(Path(folder).glob(".*.tmp-*")) if Path(folder).is_dir() else []:
        pid = path.name.rpartition("-")[2]
        if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
            out.append(path)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True


def _check_target(final: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or a non-empty folder when ``overwrite`` is off."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise UserError(f"{final} exists and is not a folder; choose another output path.")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise UserError(
            f"{final} already exists and is not empty; choose another output path "
            "or pass overwrite (--overwrite) to replace it."
        )


def _publish(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` onto ``final``; an existing ``final`` is replaced."""
    if not final.exists():
        os.replace(tmp, final)
        return
    # rename(2) replaces only an empty folder: move the old one aside first, so the window in which
    # `final` is missing is two renames long, and no reader ever sees a mix of old and new files.
    old = _temp_sibling(final, "old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(final: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success rename it onto ``final``, on error delete it.

    Write every file of the result into the yielded path. The parent folders of ``final`` are
    created. An existing empty folder at ``final`` is replaced; a non-empty one raises ``UserError``
    unless ``overwrite`` is true, in which case it is replaced as a whole (never merged). The check
    runs before the body (fail fast) and again before the rename.

    Example::

        with atomic_dir(out_dir, overwrite=cfg.overwrite) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    """
    final = Path(final).absolute()
    _check_target(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed process that had our pid
    tmp.mkdir()
    try:
        yield tmp
        _check_target(final, overwrite)
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op after a successful rename
