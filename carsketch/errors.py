"""Errors a user can act on, and the entry point that prints them without a traceback."""

import sys


class PipelineError(Exception):
    """A problem the user can fix (bad params, unreachable data, missing files); the message says how."""


def run_main(main):
    """Run a stage's main(); a PipelineError becomes one line on stderr and exit status 1."""
    try:
        return main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
