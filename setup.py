"""Distributed pretraining of BERT-style models on TensorFlow 2 + Keras 3."""

from setuptools import find_packages, setup

# TensorFlow is chosen through an extra, so GPU and TPU users get their build:
#   pip install ".[cpu]"   CPU only (small wheel; what `make install` uses)
#   pip install ".[gpu]"   NVIDIA GPUs (tensorflow[and-cuda])
#   pip install ".[tpu]"   Cloud TPU VMs (tensorflow-tpu; 2.20 is its newest release)
# TensorFlow 2.20 and 2.21 are supported (both tested); pip takes the newest of
# the range a build has. Pin one by naming it too, e.g.
#   pip install ".[cpu]" tensorflow-cpu==2.20.0   (or `make install TF_VERSION=2.20.0`)
TF_RANGE = ">=2.20,<2.22"

setup(
    name="bert-pretraining",
    version="0.1.0",
    description="Distributed pretraining of BERT-style models on TensorFlow 2 and Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["data_pipeline", "data_pipeline.*",
                                    "pretraining", "pretraining.*"]),
    # The dynamic-masking kernel's source, compiled after install by
    # `python -m data_pipeline.native` (against the TensorFlow installed).
    package_data={"data_pipeline.native": ["*.cc"],
                  # The shipped model and experiment configs (`--experiment=demo`).
                  "pretraining.configs": ["models/*.json", "experiments/*.json",
                                          "finetune/*.json"]},
    install_requires=[
        "tensorflow-datasets",
        "sentencepiece",
        "safetensors",
        "absl-py",
        "numpy",
        "tensorboard",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu{TF_RANGE}"],
        "gpu": [f"tensorflow[and-cuda]{TF_RANGE}"],
        "tpu": [f"tensorflow-tpu{TF_RANGE}"],
        "test": ["pytest", "pytest-xdist"],  # make test runs 2 workers
        "plot": ["matplotlib"],  # python -m pretraining.plot RUN
        # python -m data_pipeline.build --runner=DirectRunner|DataflowRunner|...
        # Beam 2.77 needs protobuf < 7, and sentencepiece 0.2.3's generated
        # code needs protobuf >= 7.36: Beam gets its own venv (make test-beam).
        "beam": ["apache-beam[gcp]>=2.60", "sentencepiece<0.2.3"],
    },
)
