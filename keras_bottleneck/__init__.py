"""Shared logic of the transfer-learning pipeline; stage scripts in stages/ stay thin."""
import os

# TensorFlow's C++ start-up chatter (CPU feature notes, absl warnings) drowns the stage output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
