"""`ocsched backup [DEST]` and `ocsched restore SRC` (spec §27, without MinIO).

A SQLite store is copied online with SQLite's backup API: one read transaction, so the
copy is the database at one commit even while a daemon writes (WAL readers do not block
the writer). The copy holds the log, its hash chain and the read models. A PostgreSQL log
is backed up as the logical export (`ocsched export`'s JSON lines, deciphered as an export
is); `pg_dump` is the database's own tool and is left to its administrator.

Backups are files `ocsched-<UTC time>.db` or `.jsonl`, `.gz` with `--gzip`, 0600 in a 0700
folder (default `$SCHEDULER_HOME/backups`); `--keep N` removes all but the newest N there.
A restore puts a backup into an empty home (refusing one that holds events, naming it),
rebuilds every read model from the restored log and compares them row by row with a
second rebuild (`projections verify`).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Any

from .argv import command, whole_number
from .context import Context
from .output import CommandError, print_done

PREFIX = "ocsched-"
KINDS = (".db", ".db.gz", ".jsonl", ".jsonl.gz")
SQLITE_MAGIC = b"SQLite format 3\0"
GZIP_MAGIC = b"\x1f\x8b"


def register(commands: argparse._SubParsersAction) -> None:
    backup_parser = command(
        commands,
        "backup",
        cli_backup,
        help="an online copy of the store (SQLite's backup API; PostgreSQL: the event"
        " export), compressed, with retention",
        usage="[DEST] [--gzip] [--keep N]",
        examples=[
            "ocsched backup",
            "ocsched backup /mnt/backups/ocsched --gzip --keep 14",
        ],
    )
    backup_parser.add_argument(
        "dest", nargs="?", metavar="DEST", help="a folder (default $SCHEDULER_HOME/backups)"
    )
    backup_parser.add_argument("--gzip", action="store_true", help="compress the copy")
    backup_parser.add_argument(
        "--keep", metavar="N", help="then remove all but the newest N backups in DEST"
    )
    restore_parser = command(
        commands,
        "restore",
        cli_restore,
        help="a backup into an empty home; read models rebuilt and checked",
        usage="SRC",
        description="Puts the backup SRC (a file written by `ocsched backup`, or a folder:"
        " its newest)\ninto the store SCHEDULER_HOME / SCHEDULER_DB names, which must hold no"
        " events,\nrebuilds every read model from the restored log and checks them row by"
        " row.",
        examples=[
            "ocsched restore /mnt/backups/ocsched/ocsched-20261205T030000.000Z.db.gz",
            "SCHEDULER_HOME=~/ocsched-restored ocsched restore ~/.openclaw/scheduler/backups",
        ],
    )
    restore_parser.add_argument("src", metavar="SRC", help="a backup file or a folder of them")


# Backup


def backup(ctx: Context, dest: str | None, *, compress: bool, keep: int | None) -> dict:
    from ocsched.adapters.settings import private_directory

    settings = ctx.settings
    folder = Path(dest) if dest else settings.home / "backups"
    try:
        private_directory(folder, tighten_existing=dest is None)
    except OSError as error:
        raise CommandError(f"Cannot create {folder}: {error.strerror}") from None
    started = time.monotonic()
    stamp = ctx.now.strftime("%Y%m%dT%H%M%S.") + f"{ctx.now.microsecond // 1000:03d}Z"
    suffix = ".jsonl" if settings.uses_postgres else ".db"
    target = folder / f"{PREFIX}{stamp}{suffix}{'.gz' if compress else ''}"
    partial = folder / f".{target.name}.partial"
    try:
        if settings.uses_postgres:
            events = _export(ctx, partial, compress)
        else:
            events = _copy_sqlite(settings.database, partial, compress)
        os.replace(partial, target)
    except OSError as error:
        raise CommandError(f"Cannot write {target}: {error.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    removed = prune(folder, keep) if keep is not None else []
    return {
        "path": str(target),
        "bytes": target.stat().st_size,
        "events": events,
        "seconds": round(time.monotonic() - started, 3),
        "removed": removed,
    }


def _copy_sqlite(database: str, target: Path, compress: bool) -> int:
    """The database at one commit, through SQLite's backup API, into `target` (one
    self-contained file: rollback journal, no -wal); returns its number of events."""
    from ocsched.adapters.settings import open_private_file
    from ocsched.projections.views import read_only_uri

    if not os.path.exists(database):
        raise CommandError(f"No store at {database}: nothing to back up")
    copy = target.with_name(target.name + ".db") if compress else target
    descriptor = open_private_file(copy, truncate=True)
    if descriptor is not None:
        os.close(descriptor)
    try:
        source = sqlite3.connect(read_only_uri(database), uri=True)
        try:
            copied = sqlite3.connect(copy)
            try:
                source.backup(copied)
                copied.execute("PRAGMA journal_mode=DELETE")
                events = _event_count(copied)
            finally:
                copied.close()
        finally:
            source.close()
        if compress:
            with open(copy, "rb") as plain, _private_gzip(target) as packed:
                shutil.copyfileobj(plain, packed, 1 << 20)
    except sqlite3.Error as error:
        raise CommandError(f"Cannot back up {database}: {error}") from None
    finally:
        if compress:
            copy.unlink(missing_ok=True)
    return events


def _event_count(db: sqlite3.Connection) -> int:
    try:
        return int(db.execute("SELECT count(*) FROM stored_events").fetchone()[0])
    except sqlite3.OperationalError:  # a store with no events yet
        return 0


def _private_gzip(path: Path) -> gzip.GzipFile:
    from ocsched.adapters.settings import open_private_file

    descriptor = open_private_file(path, truncate=True)
    assert descriptor is not None
    return gzip.GzipFile(fileobj=os.fdopen(descriptor, "wb"), mode="wb", mtime=0)


def _export(ctx: Context, target: Path, compress: bool) -> int:
    """The log as `ocsched export` writes it (every event, deciphered), into `target`."""
    from ocsched.adapters.settings import open_private_file

    from .exporting import export

    everything = argparse.Namespace(
        since=None, until=None, types=[], actor=None, origins=[], aggregates=[], correlations=[]
    )
    if compress:
        with _private_gzip(target) as packed:
            return export(ctx, everything, out=packed)
    descriptor = open_private_file(target, truncate=True)
    assert descriptor is not None
    with os.fdopen(descriptor, "wb") as plain:
        return export(ctx, everything, out=plain)


def backups_in(folder: Path) -> list[Path]:
    """The backups in `folder`, oldest first (their names sort by time)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [folder / n for n in names if n.startswith(PREFIX) and n.endswith(KINDS)]


def prune(folder: Path, keep: int) -> list[str]:
    """Remove all but the newest `keep` backups in `folder`; returns what was removed."""
    found = backups_in(folder)
    doomed = found[: max(len(found) - keep, 0)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return [str(path) for path in doomed]


# Restore

DAMAGED_GZIP = (EOFError, gzip.BadGzipFile, zlib.error)
"""What reading a truncated or corrupted `.gz` raises."""


def restore(ctx: Context, src: str) -> dict[str, Any]:
    from .projections import rebuild_projections
    from .replay import verify

    started = time.monotonic()
    source = _chosen(Path(src))
    with open(source, "rb") as stream:
        head = stream.read(len(SQLITE_MAGIC))
    packed = head.startswith(GZIP_MAGIC)
    if packed:
        try:
            with gzip.open(source, "rb") as stream:
                head = stream.read(len(SQLITE_MAGIC))
        except DAMAGED_GZIP as error:
            raise CommandError(f"{source} is a damaged gzip file: {error}") from None
    settings = ctx.settings
    _refuse_unless_empty(ctx)
    if head == SQLITE_MAGIC and settings.uses_postgres:
        raise CommandError(
            f"{source} is a SQLite backup; SCHEDULER_DB is PostgreSQL: restore an"
            " export (.jsonl) into it, or restore into a SQLite home"
        )
    try:
        if head == SQLITE_MAGIC:
            _place_sqlite(source, settings.database, packed)
            events = ctx.log.max_position() or 0
        else:
            events = _replay_export(ctx, source, packed)
        rebuilt = rebuild_projections(ctx)
        differences = verify(ctx)
        if differences:
            raise CommandError(
                f"restored {source}, but {len(differences)} read-model rows differ from a"
                f" rebuild: {differences[0]}"
            )
    except DAMAGED_GZIP as error:
        _empty_again(ctx)
        raise CommandError(f"{source} is a damaged gzip file: {error}; nothing restored") from None
    except BaseException:
        _empty_again(ctx)
        raise
    return {
        "restored": str(source),
        "database": settings.database,
        "events": events,
        "projections": len(rebuilt),
        "read_models_match": True,
        "seconds": round(time.monotonic() - started, 3),
    }


def _chosen(src: Path) -> Path:
    if src.is_dir():
        found = backups_in(src)
        if not found:
            raise CommandError(f"No backups found in {src}")
        return found[-1]
    if not src.is_file():
        raise CommandError(f"No backup at {src}")
    return src


def _refuse_unless_empty(ctx: Context) -> None:
    """A restore never mixes a backup with a log that has events of its own."""
    settings = ctx.settings
    if settings.uses_postgres:
        held = ctx.log.max_position() or 0
    elif os.path.exists(settings.database):
        from ocsched.projections.views import read_only_uri

        try:
            db = sqlite3.connect(read_only_uri(settings.database), uri=True)
            try:
                held = _event_count(db)
            finally:
                db.close()
        except sqlite3.DatabaseError as error:
            raise CommandError(f"{settings.database} is not a store ({error})") from None
    else:
        held = 0
    if held:
        raise CommandError(
            f"The home is not empty: {_named(settings.database)} holds {held} events;"
            " restore into a new home (SCHEDULER_HOME=<new folder> ocsched restore …)"
        )


def _empty_again(ctx: Context) -> None:
    """After a failed restore a SQLite home is left as it was found, empty, so that the
    restore can be tried again (with the right cipher key, say). Events already appended
    to PostgreSQL stay: the error says so."""
    from ocsched.adapters.settings import SQLITE_COMPANIONS

    ctx.close()
    settings = ctx.settings
    if settings.uses_postgres:
        return
    for path in dict.fromkeys((settings.database, settings.read_model_path)):
        for suffix in ("", *SQLITE_COMPANIONS):
            Path(path + suffix).unlink(missing_ok=True)


def _named(database: str) -> str:
    from urllib.parse import urlsplit

    if "://" not in database:
        return database
    parts = urlsplit(database)  # never the password
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 5432}{parts.path}"


def _place_sqlite(source: Path, database: str, packed: bool) -> None:
    """The backup's file, whole, as `database` (0600); an empty store there is replaced."""
    from ocsched.adapters.settings import SQLITE_COMPANIONS, prepare_private_file

    prepare_private_file(database)
    partial = Path(database + ".restoring")
    try:
        with (
            gzip.open(source, "rb") if packed else open(source, "rb") as stream,
            open(partial, "wb") as out,
        ):
            os.fchmod(out.fileno(), 0o600)
            shutil.copyfileobj(stream, out, 1 << 20)
        for suffix in SQLITE_COMPANIONS:
            Path(database + suffix).unlink(missing_ok=True)
        os.replace(partial, database)
    except DAMAGED_GZIP:
        raise  # (a BadGzipFile is an OSError too: not the target's fault)
    except OSError as error:
        raise CommandError(f"Cannot restore into {database}: {error.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)


def _replay_export(ctx: Context, source: Path, packed: bool) -> int:
    """An export's events appended to the (empty) log, as `ocsched replay` appends them."""
    import tempfile

    from .replay import _insert, _lines

    if not packed:
        return _insert(ctx.log, _lines(str(source)))
    with tempfile.TemporaryDirectory(prefix="ocsched-restore-") as folder:
        os.chmod(folder, 0o700)
        plain = os.path.join(folder, "events.jsonl")
        with gzip.open(source, "rb") as stream, open(plain, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        return _insert(ctx.log, _lines(plain))


# CLI


def cli_backup(ctx: Context, args: argparse.Namespace) -> None:
    keep = None
    if args.keep is not None:
        keep = whole_number(args.keep)
        if keep is None:
            raise CommandError(f"--keep must be a whole number of 1 or more, got: {args.keep}")
    done = backup(ctx, args.dest, compress=args.gzip, keep=keep)
    line = f"Backed up {done['events']} events to {done['path']} ({done['bytes']} bytes)"
    if done["removed"]:
        line += f"; removed {len(done['removed'])} older"
    print_done(ctx.json, line, **done)


def cli_restore(ctx: Context, args: argparse.Namespace) -> None:
    done = restore(ctx, args.src)
    line = (
        f"Restored {done['events']} events from {done['restored']} into {done['database']};"
        f" {done['projections']} read models rebuilt and checked"
    )
    print_done(ctx.json, line, **done)
