"""The installed package: the `keras-bottleneck` command, stage scripts that import it as a
package, and the Keras backend it sets."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

COMMAND = Path(sys.executable).with_name("keras-bottleneck")  # the venv's entry point


def test_predict_help_works_from_any_directory(tmp_path):
    result = subprocess.run([str(COMMAND), "predict", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: keras-bottleneck predict" in result.stdout and "--model" in result.stdout


def test_an_unknown_command_is_refused_with_the_known_ones(tmp_path):
    result = subprocess.run([str(COMMAND), "pedict"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "invalid choice: 'pedict'" in result.stderr
    assert "predict" in result.stderr


def test_no_stage_script_edits_sys_path():
    for script in (REPO_ROOT / "stages").glob("*.py"):
        assert "sys.path" not in script.read_text(), script


def test_the_package_sets_the_tensorflow_backend_whatever_the_environment_says(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", "import keras_bottleneck, keras; "
                             "print(keras.backend.backend())"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "tensorflow"
