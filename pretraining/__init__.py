"""Keras 3 BERT, heads, optimizers, strategies, trainer, checkpoints, conversion
and generation.

Entry points (absl apps):
  python -m pretraining.train      pretrain from an experiment (`--experiment=demo`)
  python -m pretraining.demo       the built-in sample, end to end (what `make demo` runs)
  python -m pretraining.convert    checkpoints to and from Google BERT and Hugging Face
  python -m pretraining.generate   decode from a causal-LM or seq2seq run

Shipped configs (model and experiment JSON) are in `pretraining.configs`.
"""

__version__ = "0.1.0"
