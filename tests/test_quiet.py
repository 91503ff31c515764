"""Stage output is the stage's own: TensorFlow's import-time lines and MobileNet's note on
its ImageNet input size are dropped, while anything else written meanwhile is kept."""
import os
import shutil
import subprocess
import sys

from conftest import REPO_ROOT, SHARED_MOBILENET, needs_shared
from keras_bottleneck import quiet

NOISE = [b"WARNING: All log messages before absl::InitializeLog() is called are written to "
         b"STDERR\n",
         b"I0000 00:00:1796695395.838635    2498 port.cc:153] oneDNN custom operations are "
         b"on. You may see slightly different numerical results.\n"]


def test_lines_written_while_quiet_are_kept_but_the_known_noise(capfd):
    with quiet.startup_lines_dropped():
        for line in NOISE[:1] + [b"a line of our own\n"] + NOISE[1:]:
            os.write(2, line)
    err = capfd.readouterr().err
    assert err == "a line of our own\n"


def run_quietly(code, env):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_importing_tensorflow_through_the_package_prints_nothing(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    bare = run_quietly("import tensorflow", {**env, "TF_CPP_MIN_LOG_LEVEL": "2"})
    # What TensorFlow prints at the log level the package sets is exactly what quiet drops:
    # a new kind of line fails here.
    assert all(quiet.NOISE.match(line.encode()) for line in bare.stderr.splitlines())
    ours = run_quietly("import keras_bottleneck, tensorflow, keras; print('ok')", env)
    assert ours.returncode == 0 and ours.stdout == "ok\n"
    assert ours.stderr == ""


@needs_shared(SHARED_MOBILENET)
def test_a_mobilenet_with_imagenet_weights_at_another_size_builds_without_a_warning(tmp_path):
    (tmp_path / "models").mkdir()
    shutil.copy(SHARED_MOBILENET, tmp_path / "models")
    env = {**os.environ, "KERAS_HOME": str(tmp_path)}
    code = ("import warnings; warnings.simplefilter('error'); "
            "from keras_bottleneck import backbones; from keras_bottleneck.params import Backbone; "
            "backbones.build(Backbone('mobilenet', 'imagenet', 0.25), 64); print('ok')")
    result = run_quietly(code, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "ok\n" and result.stderr == ""
