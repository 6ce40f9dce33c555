"""Only programs change process-wide state; the library, imported or called, leaves it alone.

Process-wide state is the environment, matplotlib's backend, TensorFlow's op determinism and
the global random seeds: code that changes them changes what any other code in the process
(a notebook, a test, an export after a training run) does. Importing the library also starts
no TensorFlow runtime: the benchmark forks its measurements from a process that imported it
(pix2pix_tf/benchmark/processes.py), safe only before TensorFlow's first op.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The programs (these and every `__main__`): they may set up the process, the modules they
# run may not.
ENTRY_MODULES = ("pix2pix_tf.translate", "pix2pix_tf.evaluate")

SNAPSHOT_AND_IMPORT = """
import importlib, json, os, pkgutil, random, sys
import matplotlib
import numpy as np
from tensorflow.python.eager import context
from tensorflow.python.framework import config as tf_config

import pix2pix_tf

def state():
    return {"environ": dict(os.environ),
            # The raw setting: matplotlib.get_backend() would itself resolve (select) one.
            "matplotlib_backend": str(dict.__getitem__(matplotlib.rcParams, "backend")),
            "op_determinism": tf_config.is_op_determinism_enabled(),
            "tf_global_seed": context.global_seed(),
            "python_random": repr(random.getstate()),
            "numpy_random": repr(np.random.get_state()),
            "tensorflow_context_created": context.context_safe() is not None}

before = state()
names = sorted(m.name for m in pkgutil.walk_packages(pix2pix_tf.__path__, "pix2pix_tf.")
               if m.name not in json.loads(sys.argv[1]) and not m.name.endswith(".__main__"))
for name in names:
    importlib.import_module(name)
after = state()
print(json.dumps({"imported": names, "changed": {k: [before[k], after[k]] for k in before if before[k] != after[k]}}))
"""


def test_importing_the_library_changes_no_process_state():
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    result = subprocess.run([sys.executable, "-c", SNAPSHOT_AND_IMPORT, json.dumps(ENTRY_MODULES)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "pix2pix_tf.training.summaries" in report["imported"] and len(report["imported"]) > 30
    changed = report["changed"]
    if "environ" in changed:
        old, new = changed.pop("environ")
        changed["environ"] = {k: (old.get(k), new.get(k)) for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    assert changed == {}


def test_the_fcn_segmenter_trains_the_same_whatever_the_process_seeds(tmp_path):
    """It used to reseed the whole process (keras.utils.set_random_seed) to be reproducible."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    from pix2pix_tf.evaluation import segmentation

    rng = np.random.default_rng(0)
    photos = rng.uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (8, 16, 16)).astype(np.int32)

    def weights() -> list[np.ndarray]:
        pairs = tf.data.Dataset.from_tensor_slices((photos, labels))
        model = segmentation.train_segmenter(pairs, num_classes=3, steps=3, batch_size=2, seed=5, width=4)
        return [w.numpy() for w in model.weights]

    python_state, tf_seed = random.getstate(), context.global_seed()
    first = weights()
    assert random.getstate() == python_state and context.global_seed() == tf_seed
    try:
        tf.random.set_seed(1234)  # Another program's seeds: the segmenter must not depend on them.
        random.seed(99)
        second = weights()
    finally:
        tf.random.set_seed(tf_seed)
        random.setstate(python_state)
    assert len(first) == len(second) > 10
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
