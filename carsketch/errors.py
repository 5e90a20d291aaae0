"""Errors a user can act on, and the entry point that prints them without a traceback."""

import errno
import os
import sys
from typing import Callable, TypeVar

# Exit status of a process stopped by Ctrl-C (SIGINT), as shells report it.
INTERRUPTED_STATUS = 128 + 2
Result = TypeVar("Result")


class PipelineError(Exception):
    """A problem the user can fix (bad params, unreachable data, missing files); the message says how."""


def run_main(main: Callable[[], Result]) -> Result:
    """Run a stage's main(); a PipelineError or a full disk becomes one line on stderr and exit status 1.

    Outputs are written atomically (carsketch.files), so an interrupted or failed stage leaves none half-written.
    """
    try:
        return main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        folder = os.path.relpath(os.path.dirname(os.path.abspath(error.filename))) if error.filename else ""
        where = f" in {folder}" if folder else ""
        print(f"error: no space left on the disk{where}; nothing was kept half-written: free some space and run again",
              file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was kept half-written", file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)


def missing_output(path: object, command: str = "dvc repro") -> PipelineError:
    """The error for a file that a stage makes and that is not there: the command that makes it."""
    return PipelineError(f"{path} is missing: run `{command}` first, which makes it")


def not_a_model(path: object, error: Exception) -> PipelineError:
    """The error for a model file that does not load, with the loader's first line."""
    return PipelineError(f"{path} is not a car-sketch model saved by the train stage "
                         f"({type(error).__name__}: {str(error).splitlines()[0]})")


def print_warning(message: str) -> None:
    """`warning: message` on stderr: something skipped, not an error."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
