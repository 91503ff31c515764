"""Shared logic of the transfer-learning pipeline; stage scripts in stages/ stay thin."""
import os

from . import quiet

# TensorFlow's C++ start-up chatter (CPU feature notes, absl warnings) drowns the stage output:
# its log level for what honours it, and its import's own lines dropped (see quiet).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
quiet.install()
# The stages use TensorFlow directly (tf.data, tf.function, SavedModel export): a Keras config
# or KERAS_BACKEND selecting JAX or PyTorch would break them. Keras reads this at its import,
# and the stages import it only after this package.
os.environ["KERAS_BACKEND"] = "tensorflow"
