"""Speed levers, and the one place that reaches into framework internals.

Each lever computes what the paper's code computes, faster, and each is tested against the
plain form (tests/test_performance.py, tests/test_optimizer.py). They depend on details of
Keras, TensorFlow or glibc that are not public API, so they live here, apart from the
paper's networks and training step, which call them only through these names:

- `fused_adam.FusedAdam`: the reference's Adam through TensorFlow's `ApplyAdam` kernel (Keras'
  private slot lists); chosen by `--fused_adam`.
- `keras_graph.run_functional_graph`: a Keras functional model evaluated layer by layer from
  its config's `keras_history`; the stateless test-time generator (`inference.generate`) is
  built on it.
- `tflite_lowering.phase_transposed_conv`: a 4x4 stride-2 transposed convolution as four 2x2
  convolutions for TFLite, substituted during that walk for each layer `phase_decomposable`
  accepts.
- `memory.reuse_freed_memory`: glibc malloc settings (`--reuse_memory`), called by train.py
  before TensorFlow's first op.
"""
