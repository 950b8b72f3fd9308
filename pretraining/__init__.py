"""Keras 3 BERT, heads, optimizers, strategies, trainer, checkpoints, conversion
and generation.

Entry points (absl apps):
  python -m pretraining.train      pretrain from an experiment (`--experiment=demo`)
  python -m pretraining.demo       the built-in sample, end to end (what `make demo` runs)
  python -m pretraining.convert    checkpoints to and from Google BERT and Hugging Face
  python -m pretraining.generate   decode from a causal-LM or seq2seq run
  python -m pretraining.evaluate   evaluate any checkpoint of a run on compatible records
  python -m pretraining.plot       a run's loss/accuracy curves as a PNG (matplotlib)
  python -m pretraining.export_batches  the global batches steps 1..N of a run train on
  python -m pretraining.finetune   fine-tune a run or a Google/HF checkpoint on labelled data

Shipped configs (model and experiment JSON) are in `pretraining.configs`.

`import pretraining` registers every serialisable class with Keras, so
`keras.saving.load_model("model.keras")` needs nothing more: the model
classes on any backend, the optimizers and schedules on TensorFlow. Imported
before TensorFlow, it first sets the CLIs' CPU defaults (`cpu_env`; a value
already in the environment wins), so a library run computes what the CLIs
compute. Not when Python imports the package to run one of the entry points
above (`python -m pretraining.X`, during which `sys.argv[0]` is "-m"): they
answer `--help` without loading TensorFlow and import what they use.
"""

import sys

__version__ = "0.1.0"

if sys.argv[:1] != ["-m"]:
    if "tensorflow" not in sys.modules:
        from pretraining import cpu_env
        cpu_env.apply_defaults()

    import keras

    from pretraining import pretrainer  # noqa: F401  (BertPretrainer, its head, encoder, layers)
    from pretraining.finetune import model as _classifier  # noqa: F401  (BertClassifier)
    if keras.backend.backend() == "tensorflow":
        from pretraining import optimizers  # noqa: F401  (AdamW, LAMB, SGD, schedules)
