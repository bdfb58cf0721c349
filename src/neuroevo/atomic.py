"""Files that appear whole or not at all: every output of the package is written here.

Each writer writes to a temporary file in the destination's folder (so the final rename stays on
one file system and is atomic) and renames it over the destination only once the write has
succeeded. A killed process, a full disk or an exception mid-write leaves the previous file (or
none) and no temporary behind — readers such as Snakemake, `--resume` and a concurrent run never
see half a file. Importing it needs no torch, so the analysis (whose environment has none) uses it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

UMASK = os.umask(0)  # the process's, read once (os.umask can only be read by setting it)
os.umask(UMASK)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on a clean exit rename it over `path`,
    on any exception (KeyboardInterrupt included) delete it and re-raise.

    The temporary name ends with `path`'s suffix, so writers that pick a format from the name
    (matplotlib's savefig, pandas) write the same format: `.final.pdf.<random>.tmp.pdf`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=f".tmp{path.suffix}")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp creates 0600; results are meant to be shared
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8, '\\n' line ends) to `path`, flushed to disk before the rename."""
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)`, atomically and flushed to disk before the rename (a checkpoint
    renamed in but still empty after a power loss would break --resume)."""
    import torch  # lazily: the analysis, which writes through this module, has no torch

    with replacing(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
