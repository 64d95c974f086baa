"""Writes that either complete or leave what was there: the output folder is written to a staging folder inside it
and its files then renamed into place, so a failed write (disk full, no permission) leaves the user's files and the
previous results as they were, and the error names the path that failed."""

import contextlib
import os
import shutil
from pathlib import Path

STAGING = ".pvt_hf-staging"


class OutputWriteError(OSError):
    """A checkpoint or output write that failed; what was there before is intact."""


@contextlib.contextmanager
def staged_folder(target: Path):
    """Yield an empty staging folder; when the block completes, move its files (and folders) into `target`, replacing
    those of the same name. When it fails, remove the staging folder and raise `OutputWriteError` naming `target`."""
    target = Path(target)
    staging = target / STAGING
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        yield staging
        for entry in sorted(staging.iterdir()):
            destination = target / entry.name
            if entry.is_dir() and destination.is_dir():
                shutil.rmtree(destination)
            os.replace(entry, destination)
    except Exception as error:
        raise OutputWriteError(write_failure(target, error)) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_failure(path: Path, error: Exception) -> str:
    return (
        f"writing {path} failed ({type(error).__name__}: {error}); the files already there, and the previous "
        "checkpoints, are left as they were"
    )
