"""Files that appear whole or not at all."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from va.errors import ExitCode, VaError


def write_text_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it (unless not ``durable``: a cache that
    is made again when lost) and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a write or sync that failed names no file: this is the one
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prove_writable(folder: Path) -> None:
    """Write a byte into ``folder``, sync it to the disk and remove it: a read-only or full disk, or a
    folder without permission, raises the ``OSError`` that says which (a full disk at the latest on sync)."""
    probe = folder / f".write-test-{os.getpid()}"
    with open(probe, "wb") as handle:
        handle.write(b"va")
        handle.flush()
        os.fsync(handle.fileno())
    probe.unlink()


def write_json_atomic(path: Path, data: Any, *, durable: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n", durable=durable)


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


#: A scratch folder's name after ``.encode-<target>-``: the writer (pid, start time, host), then the
#: random part of ``tempfile``. ``@`` and ``+`` appear in no host name and no pid. (``.encode-``: the
#: name the first writer, the encoder, gave them; a workdir left by an older va is cleaned the same way.)
SCRATCH_PREFIX = ".encode-"
_WRITER = re.compile(r"(?P<pid>\d+)\.(?P<start>\d+)@(?P<host>[^+]+)\+.*")


def _writer_tag() -> str:
    """This process as a scratch folder names its writer."""
    from va.processes import ProcessId  # noqa: PLC0415 - va.processes writes its records with this module

    me = ProcessId.of(os.getpid())
    return f"{os.getpid()}.{me.start if me else 0}@{socket.gethostname()}+"


def _writer_gone(name: str) -> bool:
    """Whether the writer named in a scratch folder's name (after its prefix) has ended. A writer on
    another host cannot be seen from here and counts as alive; a name without a writer is from an older
    va and counts as gone."""
    from va.processes import ProcessId  # noqa: PLC0415 - see _writer_tag

    match = _WRITER.fullmatch(name)
    if match is None:
        return True
    if match["host"] != socket.gethostname():
        return False
    return not ProcessId(int(match["pid"]), int(match["start"])).alive()


@contextmanager
def scratch_folder(target: Path) -> Iterator[Path]:
    """A hidden scratch folder beside ``target``, named after its writer, so two writers of one output
    (a cluster job still running beside its re-run) never share or delete each other's; one left by a
    writer that has ended is removed first. It is removed when the block ends."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{SCRATCH_PREFIX}{target.name}-"
    # Compared as text, not globbed: a glob compiles a pattern for each target's name (a batch's 16
    # frames, 16 patterns), and a name with ``[`` or ``*`` in it would be read as a pattern.
    with os.scandir(target.parent) as entries:
        stale = [entry.name for entry in entries if entry.name.startswith(prefix)]
    for name in stale:
        if _writer_gone(name[len(prefix) :]):
            shutil.rmtree(target.parent / name, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=prefix + _writer_tag(), dir=target.parent) as scratch:
        yield Path(scratch)


@contextmanager
def partial_file(target: Path, *, no_clobber: bool = False) -> Iterator[Path]:
    """The path a writer (ffmpeg, a download, a copy) writes ``target`` under: it has ``target``'s name
    (tools choose a format by the suffix) in this writer's scratch folder, and is renamed to ``target``
    when the block ends without an error, removed with the folder otherwise. ``no_clobber``: never
    replace a file of that name (``publish_no_clobber``)."""
    with scratch_folder(target) as scratch:
        partial = scratch / target.name
        yield partial
        if no_clobber:
            publish_no_clobber(partial, target)
        else:
            publish(partial, target)


def publish(partial: Path, target: Path) -> None:
    """Give the whole file ``partial`` the name ``target`` in one step (replacing a file of that name);
    ``partial`` must be on the same file system (beside ``target``, or in its scratch folder)."""
    os.replace(partial, target)


def publish_no_clobber(partial: Path, target: Path) -> None:
    """Give ``partial`` the name ``target`` only if nothing holds that name: a hard link (which fails on
    an existing name, atomically), then the temporary name removed. A file that appeared meanwhile (a
    user's, another writer's) is kept and the run ends with ``OUTPUT_EXISTS`` naming it. Where hard links
    are not possible, ``rename`` without replacing is the fallback (checked, then renamed)."""
    try:
        os.link(partial, target)
    except FileExistsError as exc:
        raise VaError(
            ExitCode.OUTPUT_EXISTS,
            f"{target} appeared while it was being made; kept it, the new one is not published",
        ) from exc
    except OSError:
        if target.exists():
            raise VaError(ExitCode.OUTPUT_EXISTS, f"{target} exists; not replacing it") from None
        os.rename(partial, target)
        return
    partial.unlink()


def copy_file_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``, which appears whole or not at all."""
    with partial_file(target) as partial:
        shutil.copyfile(source, partial)


def place_file(source: Path, target: Path) -> None:
    """``target`` as a second name of ``source`` (a hard link; a copy where the file system has none),
    appearing whole or not at all."""
    with partial_file(target) as partial:
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)


def stream_to_file(target: Path, blocks: Iterable[bytes], *, scratch: Path | None = None) -> None:
    """Write ``blocks`` (a download's body) to ``target``, which appears whole when the last block is
    written and not at all when the stream breaks off (the error is raised). ``scratch``: a scratch
    folder of this writer beside ``target`` (``scratch_folder``) that several files share, the frames of
    one batch (one folder made and removed for all, not one a frame: 0.5 ms of CPU each); else one of
    its own."""
    if scratch is None:
        with partial_file(target) as partial:
            _write_blocks(partial, blocks)
        return
    partial = scratch / target.name
    _write_blocks(partial, blocks)
    publish(partial, target)


def _write_blocks(path: Path, blocks: Iterable[bytes]) -> None:
    with open(path, "wb") as handle:
        for block in blocks:
            handle.write(block)
