"""Writing a file the user named on the command line: all of it or none of it.

The text goes to a temporary file beside the target and is renamed over it only once
it is complete, so a full disk or a killed process never leaves half a file (nor
destroys the old one). Anything in the way (a missing folder, a folder or a device
under that name, no permission) is one sentence that says what to change.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import UserError


def write_text_atomically(path: str | os.PathLike, text: str, flag: str = "-o") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path written.
    ``flag`` names the option the path came from, for the message."""
    target = Path(path).expanduser()
    if target.is_symlink() or target.exists():
        target = target.resolve()  # write through a link, never replace the link
    if target.exists() and not target.is_file():
        kind = "a folder" if target.is_dir() else "not a regular file"
        raise UserError(f"{path} is {kind}; give {flag} the path of a file to write "
                        "(for example runs.csv).")
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"The folder {folder} does not exist; create it first or give "
                        f"{flag} a path in a folder that exists.")
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(_why(path, e, flag)) from None
    return target


def _why(path, e: OSError, flag: str) -> str:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG):
        return (f"Could not write {path}: the disk is full (or over its quota); free some "
                "space and try again (nothing was written).")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"Could not write {path} ({e.strerror}); give {flag} a path in a folder "
                "you can write to.")
    return f"Could not write {path} ({e.strerror or e}); give {flag} another path."
