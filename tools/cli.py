"""How every tool ends on a bad input: the message (which names the input and the fix) and exit
status 1, not a traceback. ``MTR_DEBUG=1`` shows the traceback too."""
import os
import sys

# What the project raises for bad inputs (mtr_mm.checkpoint.CheckpointError is a ValueError).
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)


def run(main):
    try:
        return main()
    except USER_ERRORS as error:
        if os.environ.get('MTR_DEBUG'):
            raise
        sys.exit(f'error: {error}')
