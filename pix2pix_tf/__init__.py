"""pix2pix (Isola et al., CVPR 2017) in TensorFlow 2 and Keras 3.

The package is three parts, one above the other: the runtime, which translates images with a
trained or exported generator; the trainer, which makes, evaluates and exports one; and the
tooling, which measures both. What a TensorFlow Serving, TFLite or ONNX user imports
(serving.client, inference.sources, inference.tflite_runner, inference.onnx_runner,
inference.artifacts) thus never loads the trainer or the tooling.
The tooling stays in the repository: setup.py leaves it out of the wheel a user installs.

A module imports only from its own layer or the layers below; the groups of one layer never
import each other both ways (LAYERS, lowest first; tests/test_layers.py checks every import,
inside functions too):

| layer      | groups                                                            | part    |
|------------|-------------------------------------------------------------------|---------|
| foundation | errors, catalogue, config_checks, config, images, image_header,   | all     |
|            | image_files, writing, regular_files, workdir, progress, cli,      |         |
|            | native_logs, checkpoint_reading                                   |         |
| model      | networks, data                                                    | all     |
| runtime    | inference, serving                                                | runtime |
| training   | training                                                          | trainer |
| trainer    | export, evaluation, demo                                          | trainer |
| tooling    | benchmark, experiments                                            | tooling |
| commands   | train.py, export.py, translate, evaluate, every `__main__`        |         |
"""

__version__ = "0.1.0"

# (layer, its groups): a group is a module or subpackage of pix2pix_tf, or a script beside it.
LAYERS = (
    ("foundation", ("errors", "catalogue", "config_checks", "config", "images", "image_header", "image_files",
                    "writing", "regular_files", "workdir", "progress", "cli", "native_logs", "checkpoint_reading")),
    ("model", ("networks", "data")),
    ("runtime", ("inference", "serving")),
    ("training", ("training",)),
    ("trainer", ("export", "evaluation", "demo")),
    ("tooling", ("benchmark", "experiments")),
    ("commands", ("train.py", "export.py", "translate", "evaluate", "__main__")),
)
