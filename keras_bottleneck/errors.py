"""User-facing errors: one line naming the problem and the fix, exit code 1."""
import sys


class PipelineError(Exception):
    """Bad input or environment that the user can fix; never a bug in our code."""


def run_stage(main):
    """Run a stage's main(); report a PipelineError as a single line instead of a traceback."""
    try:
        main()
    except PipelineError as error:
        # One line whatever a library put in the message, so `error:` starts the last line.
        print("error:", " ".join(str(error).split()), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
