"""A setting that names a shared folder never changes that folder's modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ocsched.adapters.settings import (
    PRIVATE_DIRECTORY,
    PRIVATE_FILE,
    Settings,
    secure_store,
    tighten,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_database_setting_naming_a_sticky_shared_folder_leaves_it_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    home = tmp_path / "home"
    secure_store(Settings.from_environment({"HOME": str(home), "SCHEDULER_DB": str(shared)}))
    assert mode_of(shared) == 0o1777


def test_a_scheduler_home_naming_the_users_home_leaves_it_alone(tmp_path, monkeypatch):
    user_home = tmp_path / "user"
    user_home.mkdir()
    os.chmod(user_home, 0o755)
    monkeypatch.setenv("HOME", str(user_home))
    secure_store(
        Settings.from_environment({"HOME": str(user_home), "SCHEDULER_HOME": str(user_home)})
    )
    assert mode_of(user_home) == 0o755


def test_only_a_regular_file_is_tightened_as_a_file_and_a_folder_as_a_folder(tmp_path):
    folder, file = tmp_path / "folder", tmp_path / "file"
    folder.mkdir()
    file.write_text("x")
    os.chmod(folder, 0o755)
    os.chmod(file, 0o644)
    assert not tighten(folder, PRIVATE_FILE)
    assert not tighten(file, PRIVATE_DIRECTORY)
    assert tighten(file, PRIVATE_FILE) and mode_of(file) == 0o600
    assert tighten(folder, PRIVATE_DIRECTORY) and mode_of(folder) == 0o700
