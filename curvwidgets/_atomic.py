"""Atomic file writes: write to a temporary file beside the target, then rename it into place.

The temporary file is named ``.<target name>.<host>.<pid>.<random>.partial<suffix>``
(e.g. ``.spectrum.npz.node7.4242.k3j_x9ab.partial.npz``): hidden, recognisable
as an unfinished write of ``<target name>``, and carrying the writer's host and
process id. A writer killed outright (SIGKILL, power loss) cannot remove its
temporary file; the next :func:`atomic_path` for the same target removes the
ones of this host whose process no longer exists (not on Windows, where no
process can be tested without signalling it).
"""

from __future__ import annotations

import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


def _read_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back, once, at import)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _existing_folder(target: Path) -> Path:
    """The nearest existing folder above ``target``; ``NotADirectoryError`` when a file stands there instead."""
    existing = next(parent for parent in target.parents if parent.exists())
    if not existing.is_dir():  # a file stands where a folder of the path should be
        raise NotADirectoryError(f"cannot write {os.fspath(target)!r}: {os.fspath(existing)!r} is a file, "
                                 "not a folder")
    return existing


_PARTIAL = ".partial"


def _host() -> str:
    """This machine's name as it appears in temporary names (dots, which separate the name's parts, as ``-``)."""
    return socket.gethostname().replace(".", "-") or "localhost"


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (``os.kill(pid, 0)``; one of another user counts).

    Always true on Windows, where ``os.kill`` cannot test a process without
    signalling it: temporary files are never removed there.
    """
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists but belongs to someone else
        pass
    return True


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporary files of earlier writes of ``target`` by processes of this host that no longer exist.

    A name that does not parse, another host's file, a live process's file
    (this one's included) and a file that cannot be removed are left alone.
    """
    prefix, suffix = f".{target.name}.", f"{_PARTIAL}{target.suffix}"
    try:
        candidates = [entry for entry in target.parent.iterdir()
                      if entry.name.startswith(prefix) and entry.name.endswith(suffix)]
    except OSError:  # a missing or unreadable folder: nothing to clean
        return
    host = _host()
    for entry in candidates:
        parts = entry.name[len(prefix):-len(suffix)].rsplit(".", 2)  # host, pid, random part
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and int(parts[1]) > 0 \
                and not _process_exists(int(parts[1])):
            try:
                entry.unlink()
            except OSError:  # removed meanwhile by another writer, or not ours to remove
                pass


def _temporary_beside(target: Path) -> Path:
    """An empty temporary file in ``target``'s folder (created with its parents), or an ``OSError`` naming ``target``.

    The error keeps the class of the one raised (``PermissionError``,
    ``NotADirectoryError``, ...) but names the file asked for, not the
    temporary one, and the folder that could not be written.
    """
    _existing_folder(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{_host()}.{os.getpid()}.",
                                        suffix=f"{_PARTIAL}{target.suffix}")
    except OSError as error:
        raise type(error)(error.errno, f"cannot write {os.fspath(target)!r}: creating a file in "
                                       f"{os.fspath(target.parent)!r} fails ({error.strerror})") from None
    os.close(handle)
    return Path(name)


def check_writable(path: Union[str, os.PathLike]) -> None:
    """Raise now the ``OSError`` that writing ``path`` with :func:`atomic_path` would raise later.

    For a result that is computed before it is saved, so that a path that
    cannot be written is found before the computation, not after it. Nothing
    is created: the nearest existing folder of ``path`` must be writable
    (missing folders are created by the write). ``~`` is expanded; give the
    path the write will use (with any suffix the writer adds).
    """
    target = Path(path).expanduser()
    if target.is_dir():  # also "" and "/"
        raise IsADirectoryError(f"cannot write {os.fspath(path)!r}: it is a folder; give a file's path")
    folder = _existing_folder(target)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {os.fspath(target)!r}: the folder {os.fspath(folder)!r} is not "
                              "writable")


@contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``path``.

    An exception inside the block leaves ``path`` untouched (the temporary
    file is removed), so readers never see a half-written file. A process
    killed inside the block leaves its temporary file (named as the module
    says); the next call for the same ``path`` removes it.
    The temporary name keeps the target's suffix, so writers that choose a
    format by suffix (matplotlib, numpy) still do the right thing. The file
    gets the mode a plain ``open()`` would give it (``0o666`` less the umask),
    not the private ``0o600`` of a temporary file.
    """
    target = Path(path)
    _remove_stale_temporaries(target)
    temporary = _temporary_beside(target)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
