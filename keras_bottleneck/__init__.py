"""Shared logic of the transfer-learning pipeline; stage scripts in stages/ stay thin."""
import os

# TensorFlow's C++ start-up chatter (CPU feature notes, absl warnings) drowns the stage output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The stages use TensorFlow directly (tf.data, tf.function, SavedModel export): a Keras config
# or KERAS_BACKEND selecting JAX or PyTorch would break them. Keras reads this at its import,
# and the stages import it only after this package.
os.environ["KERAS_BACKEND"] = "tensorflow"
