"""Distributed pretraining of BERT-style models on TensorFlow 2 + Keras 3."""

from setuptools import find_packages, setup

# TensorFlow is chosen through an extra, so GPU and TPU users get their build:
#   pip install -e ".[cpu]"   CPU only (small wheel; what `make install` uses)
#   pip install -e ".[gpu]"   NVIDIA GPUs (tensorflow[and-cuda])
#   pip install -e ".[tpu]"   Cloud TPU VMs (tensorflow-tpu)
TF_VERSION = "2.21.0"

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
    package_data={"data_pipeline.native": ["*.cc"]},
    install_requires=[
        "tensorflow-datasets",
        "sentencepiece",
        "safetensors",
        "absl-py",
        "numpy",
        "tensorboard",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={TF_VERSION}"],
        "gpu": [f"tensorflow[and-cuda]=={TF_VERSION}"],
        "tpu": [f"tensorflow-tpu=={TF_VERSION}"],
        "test": ["pytest"],
    },
)
