"""A browser demo of a trained generator: `python -m pix2pix_tf.demo --workdir=runs/x`.

`model.py` is the part without a web framework: the model from one source (a run, a
SavedModel, a TFLite file or a running TensorFlow Serving), the drawing that fits the run's
dataset, and the run's held-out inputs as examples. `app.py` builds the Gradio page on top
of it; `__main__.py` is the entry point. See docs/demo.md.
"""
