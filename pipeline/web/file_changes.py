"""Whether a mounted file changed since it was last read: secrets (tokens, the peer key)
are rotated by replacing the file, and workers pick the new one up without a restart."""

from __future__ import annotations

import os
from pathlib import Path


class FileChanges:
    """One `stat` a call: modification time, size and inode (a Secret's update swaps it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def changed(self) -> bool:
        """True once for each change seen since the last call (or since made)."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True
