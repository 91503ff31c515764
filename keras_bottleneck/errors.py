"""User-facing errors: one line naming the problem and the fix, exit code 1."""
import errno
import re
import sys
from pathlib import Path, PurePath

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class PipelineError(Exception):
    """Bad input or environment that the user can fix; never a bug in our code."""


def _stage_writing(path):
    """(the DVC output holding `path`, the stage that writes it), from ./dvc.yaml, or None."""
    import yaml
    try:
        stages = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    path = PurePath(path)
    for stage, spec in stages.items():
        for out in spec.get("outs", []):
            out = PurePath(next(iter(out)) if isinstance(out, dict) else out)
            if path == out or out in path.parents:
                return out, stage
    return None


def damaged(path, detail):
    """The PipelineError for a file that is there but not whole (a copy cut short, a full
    disk, a bad sector): it names the file and how to get it back."""
    found = _stage_writing(path)
    fix = (f"restore it with `dvc checkout --force {found[0]}`, or rebuild it with "
           f"`dvc repro --force {found[1]}`") if found else "restore or rebuild it"
    return PipelineError(f"{path} is damaged ({detail}): {fix}")


def is_disk_full(error):
    """Whether `error` is a full disk or quota, also where a library wrapped the OSError."""
    return (isinstance(error, OSError) and error.errno in _DISK_FULL) \
        or "No space left on device" in str(error)


def final_name(path):
    """`path` with atomic_path's temporary names (.<stem>.tmp-<pid><suffix>) as the outputs they
    become: what the user knows them by."""
    return re.sub(r"(^|/)\.([^/]+)\.tmp-\d+", r"\1\2", str(path))


def disk_full_message(error):
    where = getattr(error, "filename", None)
    where = where and final_name(where)
    return (f"no space left on the device{f' writing {where}' if where else ''}: free some "
            "space (or move the project or DVC's cache to a bigger disk), then run "
            "`dvc repro` again; nothing this stage wrote was kept")


def no_room(path, needed):
    """The PipelineError for a file of `needed` bytes that does not fit where it goes."""
    import shutil
    free = shutil.disk_usage(Path(path).parent).free
    return PipelineError(f"no space left on the device for {final_name(path)}: it needs "
                         f"{_size(needed)}, {_size(free)} are free; free some space (or move "
                         "the project to a bigger disk), then run `dvc repro` again")


def _size(count):
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.1f} kB"


def run_stage(main):
    """Run a stage's main(); report a PipelineError or a full disk as a single line instead of
    a traceback."""
    try:
        main()
    except PipelineError as error:
        # One line whatever a library put in the message, so `error:` starts the last line.
        print("error:", " ".join(str(error).split()), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except MemoryError:
        print("error: out of memory: close other programs or run on a machine with more memory "
              "(extract.batch_size and train.batch_size set how much a batch holds)",
              file=sys.stderr)
        sys.exit(1)
    except Exception as error:
        if not is_disk_full(error):
            raise
        print("error:", disk_full_message(error), file=sys.stderr)
        sys.exit(1)
