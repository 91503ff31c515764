"""TensorFlow's start-up lines, dropped: its C++ code writes them straight to file descriptor 2
while `import tensorflow` runs ("All log messages before absl::InitializeLog() is called...",
"oneDNN custom operations are on..."), before TF_CPP_MIN_LOG_LEVEL is read, and no setting
silences them. They buried every stage's own summary line.

`install()` wraps the first import of tensorflow (by Keras or by us) so that what it writes to
descriptor 2 goes to a temporary file, then is copied to stderr but for those lines.
"""
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from contextlib import contextmanager

NOISY_MODULE = "tensorflow"  # the module whose first import is quieted (not an engine name)
NOISE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                   rb"|I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on)")


@contextmanager
def startup_lines_dropped(noise=NOISE):
    """Descriptor 2 into a temporary file while the block runs; then its lines but those
    matching `noise` to descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = b"".join(line for line in caught if not noise.match(line))
            if kept:
                os.write(2, kept)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders do, with a loader that runs it quietly."""

    def find_spec(self, name, path, target=None):
        if name != NOISY_MODULE:
            return None
        sys.meta_path.remove(self)  # once: then the usual finders alone
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with startup_lines_dropped():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self.loader, name)


def install():
    """Quiet the first import of tensorflow in this process (nothing if it is imported)."""
    if NOISY_MODULE not in sys.modules and \
            not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
