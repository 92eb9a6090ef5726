"""Atomic folders: published whole on success, the previous one intact after a failure mid-write, and the
temporary folders a killed writer leaves found (only those of dead processes)."""

from __future__ import annotations

import os

import pytest

from alignrl.errors import UserError
from alignrl.io import abandoned_writes, atomic_dir


def test_a_failed_write_leaves_the_previous_folder_intact_and_no_temporary(tmp_path):
    final = tmp_path / "ckpt"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(final, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (final / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]  # replaced as a whole, never merged


def test_a_non_empty_target_needs_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep")
    with pytest.raises(UserError, match="out"), atomic_dir(tmp_path / "out"):
        pass
    assert (tmp_path / "out" / "x").read_text() == "keep"


def test_abandoned_writes_are_those_of_dead_processes(tmp_path):
    dead, live = tmp_path / ".step_000003.tmp-999999", tmp_path / f".step_000004.tmp-{os.getpid()}"
    for folder in (dead, live, tmp_path / "step_000002"):
        folder.mkdir()
    assert abandoned_writes(tmp_path) == [dead]
    assert abandoned_writes(tmp_path / "missing") == []
