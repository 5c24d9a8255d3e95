"""Atomic artifact writes: all or nothing."""

import pytest

from top.atomic import atomic_directory


def test_a_failed_write_keeps_the_old_directory(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "weights").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "weights").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (target / "weights").read_text() == "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
