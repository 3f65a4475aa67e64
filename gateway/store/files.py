"""Writing the data directory's small files: durably, atomically, secrets mode 0600."""
import os
import pathlib
import threading


def _write_temp(path: pathlib.Path, data: bytes, mode: int) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def write_file(path, data: bytes, *, private: bool):
    """Replace `path` with `data` in one step: readers see the old or the new file."""
    path = pathlib.Path(path)
    os.replace(_write_temp(path, data, 0o600 if private else 0o644), path)


def create_private(path, data: bytes) -> bool:
    """Create `path` (0600) with `data` unless it exists; False if another process (or
    an earlier start) created it first, whose content then stands."""
    path = pathlib.Path(path)
    tmp = _write_temp(path, data, 0o600)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


class WatchedFile:
    """A file another process may replace (revocations, key ring): `current()` returns
    its parsed content, parsing again only when the file changed (one stat a call)."""

    def __init__(self, path, parse, missing=None):
        self.path = pathlib.Path(path)
        self._parse = parse                 # bytes -> value
        self._missing = missing             # the value while the file does not exist
        self._lock = threading.Lock()
        self._stamp = object()
        self._value = missing

    def current(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            with self._lock:
                self._value = self._missing if stamp is None else self._parse(self.path.read_bytes())
                self._stamp = stamp
        return self._value
