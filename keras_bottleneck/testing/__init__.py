"""Helpers for the tests and benchmarks (photo-like images, a loopback Ray cluster): no stage
imports them, and `import keras_bottleneck` does not load them."""
