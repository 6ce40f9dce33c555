"""pix2pix_tf: pix2pix (Isola et al., CVPR 2017) in TensorFlow 2 and Keras 3."""

from setuptools import find_packages, setup

TOOLING = ["pix2pix_tf.benchmark", "pix2pix_tf.benchmark.*", "pix2pix_tf.experiments", "pix2pix_tf.experiments.*"]

setup(
    name="pix2pix_tf",
    version="0.1.0",
    description="pix2pix image-to-image translation in TensorFlow 2 / Keras 3: train, evaluate, serve.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.10",
    # The tooling (the speed benchmark, the paper's experiments) stays in the repository: a user who
    # installs the package to translate, serve or export gets the runtime and the trainer only.
    packages=find_packages(include=["pix2pix_tf", "pix2pix_tf.*"], exclude=TOOLING),
    # The absl apps live at the top level of the repository: python train.py, python export.py.
    py_modules=["train", "export"],
    package_data={"pix2pix_tf.export.web": ["index.html", "app.js", "page.css", "package.json", "package-lock.json"]},
    install_requires=[
        "tensorflow>=2.21",
        "keras>=3",
        "tensorflow-datasets",
        "matplotlib",
        "absl-py",
        "tensorboard",  # tf.summary needs it; TensorFlow 2.21 no longer installs it.
        "ai-edge-litert",  # LiteRT interpreter: export checks every .tflite with it (tf.lite.Interpreter is going).
        "tensorflow-serving-api",  # PredictionLog protos (warmup records) and the gRPC client; pins tensorflow>=2.21.
    ],
    extras_require={
        # dill: tfds' builder test machinery; selenium: the demo test; nbclient, nbformat, ipykernel: the notebook's.
        "test": ["pytest", "pytest-xdist", "ruff", "dill", "selenium", "nbclient", "nbformat", "ipykernel"],
        "demo": ["gradio>=6"],  # python -m pix2pix_tf.demo (docs/demo.md)
        "onnx": ["tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20"],  # export.py --onnx, --onnx sources (docs/onnx.md)
    },
    entry_points={
        "console_scripts": [
            "pix2pix-train=train:run",
            "pix2pix-export=export:run",
            "pix2pix-translate=pix2pix_tf.translate:run",
            "pix2pix-evaluate=pix2pix_tf.evaluate:run",
            "pix2pix-demo=pix2pix_tf.demo.__main__:run",
        ],
    },
)
