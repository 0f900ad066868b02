"""Settings read without pathlib, urllib.parse or getpass (issue 10: start-up time): each
stand-in answers as the standard library's own function does."""

from __future__ import annotations

import dataclasses
import getpass
from pathlib import Path
from urllib.parse import quote

import pytest

from ocsched.adapters.settings import Settings, _folder, login_name, secure_store
from ocsched.projections.views import uri_path

FOLDERS = [
    "/tmp/x",
    "/tmp/x/",
    "/tmp//x///y/",
    "/tmp/./x/.",
    "/tmp/../x/..",
    "//host/share",
    "///tmp",
    "////tmp//x",
    "relative/./path/",
    "./relative",
    ".",
    "..",
    "",
    "/",
    "//",
    "~/not-expanded",
]


@pytest.mark.parametrize("text", FOLDERS)
def test_a_folder_reads_as_path_writes_it(text):
    assert _folder(text) == str(Path(text))


@pytest.mark.parametrize(
    "path", ["/tmp/a b/c%d?e#f&g=h", "/é/日本/x;y", "/a/~b/_c-.d", "/x\"y'z<>[]{}|\\^`", ""]
)
def test_a_database_uri_quotes_its_path_as_urllib_does(path):
    assert uri_path(path) == quote(path)


def test_the_login_name_is_getpass_s(monkeypatch):
    assert login_name() == getpass.getuser()
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    assert login_name() == getpass.getuser()  # the password database's
    monkeypatch.setenv("USERNAME", "someone")
    assert login_name() == getpass.getuser() == "someone"


def test_folder_settings_are_paths_whether_given_as_text_or_as_paths(tmp_path):
    env = {
        "HOME": f"{tmp_path}/user/",
        "SCHEDULER_HOME": f"{tmp_path}//home/./",
        "OPENCLAW_HOME": str(tmp_path / "claw"),
    }
    settings = Settings.from_environment(env)
    assert settings.home == tmp_path / "home"
    assert settings.database == str(tmp_path / "home" / "ocsched.db")
    assert settings.user_home == tmp_path / "user"
    assert settings.openclaw_home == tmp_path / "claw"
    assert settings.dispatch_config_dir == tmp_path / "user" / ".openclaw" / "dispatch"
    assert all(
        isinstance(value, Path)
        for value in (settings.home, settings.user_home, settings.dispatch_config_dir)
    )
    given = Settings(home=tmp_path, database=settings.database)
    assert given.home == tmp_path and given.user_home == Path.home()
    assert given.openclaw_home == Path.home() / ".openclaw"
    assert given == Settings(home=str(tmp_path), database=settings.database)
    assert given != dataclasses.replace(given, home=tmp_path / "other")
    assert dataclasses.replace(given, debug=True).home == tmp_path
    assert repr(given).startswith(f"Settings(home={tmp_path!r}, database=")
    with pytest.raises(dataclasses.FrozenInstanceError):
        given.home = tmp_path  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings(database="x")  # type: ignore[call-arg]


@pytest.mark.parametrize("home", ["/tmp/x", ".", "/", "relative/../x/"])
def test_the_files_under_the_home_read_as_path_joins_them(home):
    settings = Settings.from_environment({"SCHEDULER_HOME": home, "OCSCHED_CIPHER_KEY": "k"})
    assert settings.database == str(Path(home) / "ocsched.db")
    assert settings.read_model_path == str(Path(home) / "read-models.db")
    pg = Settings.from_environment({"SCHEDULER_HOME": home, "SCHEDULER_DB": "postgresql://h/d"})
    assert pg.artifacts_dir == Path(home) / "artifacts"


def test_artifacts_default_beside_the_database_file_resolved(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    settings = Settings(home=tmp_path, database=str(tmp_path / "link" / "ocsched.db"))
    assert settings.artifacts_dir == tmp_path / "real" / "artifacts"
    pg = Settings(home=tmp_path, database="postgresql://u@h/db")
    assert pg.artifacts_dir == tmp_path / "artifacts"
    assert pg.read_model_path == str(tmp_path / "read-models.db")


def test_securing_the_store_tightens_only_the_scheduler_s_folders(tmp_path):
    home = tmp_path / "home"
    (home / "sub" / "artifacts" / "runs" / "r1").mkdir(parents=True)
    out = home / "sub" / "artifacts" / "runs" / "r1" / "out.txt"
    out.write_text("x")
    outside = tmp_path / "outside"
    (outside / "artifacts").mkdir(parents=True)
    folders = (home, home / "sub", home / "sub" / "artifacts", outside, outside / "artifacts")
    for folder in (*folders, out.parent.parent):
        folder.chmod(0o755)
    out.chmod(0o644)

    def modes() -> list[int]:
        return [path.stat().st_mode & 0o777 for path in (*folders, out)]

    secure_store(Settings(home=home, database=str(home / "sub" / "ocsched.db")))
    assert modes() == [0o700, 0o700, 0o700, 0o755, 0o755, 0o600]
    secure_store(Settings(home=home, database=str(outside / "ocsched.db")))
    assert modes() == [0o700, 0o700, 0o700, 0o755, 0o700, 0o600]  # its artifacts are ours
    named = Settings(home=home, database=str(outside / "x.db"), artifacts=str(tmp_path))
    tmp_path.chmod(0o755)
    secure_store(named)
    assert tmp_path.stat().st_mode & 0o777 == 0o755  # a folder the user named, outside
