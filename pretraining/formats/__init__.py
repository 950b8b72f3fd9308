"""Checkpoint formats the converter reads and writes: `google` (TF1 name-based
BERT checkpoints), `huggingface` (safetensors + config.json), `native` (this
framework's trainer checkpoints and `.keras` files), and their vocabularies.
Each reads into / writes from a `bundle.Bundle`."""
