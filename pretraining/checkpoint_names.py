"""The one name table: our Keras variable paths ↔ Google's TF checkpoint names
↔ Hugging Face's `BertForMaskedLM` state-dict names.

Each row gives, for one variable, the three names (`{i}` stands for the layer
number), the part of the model it belongs to (`encoder`, `mlm` or `nsp`), and
whether Hugging Face stores it transposed (`torch.nn.Linear` weights are
`[out, in]`; Keras and Google kernels are `[in, out]`). Google stores one
variable transposed: the NSP head's `cls/seq_relationship/output_weights`
(`[2, hidden]`).

Variables whose path is not in the table (e.g. Conditional LayerNorm's
`gamma_dense`/`beta_dense` kernels, `condition_dense`) have no Google or
Hugging Face counterpart: `lookup` returns None for them.

Example:
```python
entry = lookup("bert/layer_3/attention/query/kernel")
entry.google  # "bert/encoder/layer_3/attention/self/query/kernel"
entry.hf      # "bert.encoder.layer.3.attention.self.query.weight"
entry.hf_transpose  # True
```
"""

import dataclasses
import re

ENCODER, MLM, NSP = "encoder", "mlm", "nsp"
POOLER = ("bert/pooler/kernel", "bert/pooler/bias")

# (ours, Google, Hugging Face, part, HF transposed)
_ROWS = (
    ("bert/embeddings/word_embeddings/embeddings", "bert/embeddings/word_embeddings",
     "bert.embeddings.word_embeddings.weight", ENCODER, False),
    ("bert/embeddings/token_type_embeddings/embeddings", "bert/embeddings/token_type_embeddings",
     "bert.embeddings.token_type_embeddings.weight", ENCODER, False),
    ("bert/embeddings/position_embeddings/embeddings", "bert/embeddings/position_embeddings",
     "bert.embeddings.position_embeddings.weight", ENCODER, False),
    ("bert/embeddings/LayerNorm/gamma", "bert/embeddings/LayerNorm/gamma",
     "bert.embeddings.LayerNorm.weight", ENCODER, False),
    ("bert/embeddings/LayerNorm/beta", "bert/embeddings/LayerNorm/beta",
     "bert.embeddings.LayerNorm.bias", ENCODER, False),
    *[(f"bert/layer_{{i}}/attention/{qkv}/{kind}",
       f"bert/encoder/layer_{{i}}/attention/self/{qkv}/{kind}",
       f"bert.encoder.layer.{{i}}.attention.self.{qkv}.{hf}", ENCODER, kind == "kernel")
      for qkv in ("query", "key", "value") for kind, hf in (("kernel", "weight"),
                                                            ("bias", "bias"))],
    *[(f"bert/layer_{{i}}/{ours}/{kind}", f"bert/encoder/layer_{{i}}/{google}/{kind}",
       f"bert.encoder.layer.{{i}}.{hf}.{hf_kind}", ENCODER, kind == "kernel")
      for ours, google, hf in (
          ("attention_output", "attention/output/dense", "attention.output.dense"),
          ("intermediate", "intermediate/dense", "intermediate.dense"),
          ("output", "output/dense", "output.dense"))
      for kind, hf_kind in (("kernel", "weight"), ("bias", "bias"))],
    *[(f"bert/layer_{{i}}/{ours}/{kind}", f"bert/encoder/layer_{{i}}/{google}/{kind}",
       f"bert.encoder.layer.{{i}}.{hf}.{hf_kind}", ENCODER, False)
      for ours, google, hf in (
          ("attention_layer_norm", "attention/output/LayerNorm", "attention.output.LayerNorm"),
          ("output_layer_norm", "output/LayerNorm", "output.LayerNorm"))
      for kind, hf_kind in (("gamma", "weight"), ("beta", "bias"))],
    ("bert/pooler/kernel", "bert/pooler/dense/kernel", "bert.pooler.dense.weight", ENCODER, True),
    ("bert/pooler/bias", "bert/pooler/dense/bias", "bert.pooler.dense.bias", ENCODER, False),
    ("mlm/transform/kernel", "cls/predictions/transform/dense/kernel",
     "cls.predictions.transform.dense.weight", MLM, True),
    ("mlm/transform/bias", "cls/predictions/transform/dense/bias",
     "cls.predictions.transform.dense.bias", MLM, False),
    ("mlm/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/gamma",
     "cls.predictions.transform.LayerNorm.weight", MLM, False),
    ("mlm/LayerNorm/beta", "cls/predictions/transform/LayerNorm/beta",
     "cls.predictions.transform.LayerNorm.bias", MLM, False),
    ("mlm/output_bias", "cls/predictions/output_bias", "cls.predictions.bias", MLM, False),
    ("nsp/kernel", "cls/seq_relationship/output_weights", "cls.seq_relationship.weight", NSP,
     True),
    ("nsp/bias", "cls/seq_relationship/output_bias", "cls.seq_relationship.bias", NSP, False),
)
_GOOGLE_TRANSPOSED = ("nsp/kernel",)

# Names in Google's and Hugging Face's checkpoints that we read past on purpose.
# Optimizer state and bookkeeping in Google's checkpoints.
GOOGLE_OPTIMIZER_SUFFIXES = ("/adam_m", "/adam_v")
GOOGLE_BOOKKEEPING = ("global_step",)
# Hugging Face: the tied decoder (= word embeddings, `cls.predictions.bias`)
# and buffers that are not weights.
HF_TIED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
HF_BUFFERS = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One variable's names: `ours` (Keras path), `google`, `hf` (with the
    `bert.` prefix), `part` (`encoder`/`mlm`/`nsp`), `hf_transpose`,
    `google_transpose`."""

    ours: str
    google: str
    hf: str
    part: str
    hf_transpose: bool
    google_transpose: bool = False


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"(\d+)") + "$")


_COMPILED = [(_pattern(row[0]), row) for row in _ROWS]


def lookup(path: str) -> Entry | None:
    """The table row for one of our variable paths, or None if it has none."""
    for pattern, (ours, google, hf, part, transpose) in _COMPILED:
        match = pattern.match(path)
        if match:
            layer = match.group(1) if match.groups() else None
            fill = (lambda s: s.replace("{i}", layer)) if layer is not None else (lambda s: s)
            return Entry(path, fill(google), fill(hf), part, transpose,
                         ours in _GOOGLE_TRANSPOSED)
    return None


def is_google_ignorable(name: str) -> bool:
    """Optimizer slots and the step counter of a Google checkpoint."""
    return name in GOOGLE_BOOKKEEPING or name.endswith(GOOGLE_OPTIMIZER_SUFFIXES)


def normalize_hf_name(name: str, prefixed: bool) -> str:
    """A Hugging Face state-dict name in the table's form: `bert.` prefix
    added to a bare `BertModel` name (`embeddings.*`, `encoder.*`,
    `pooler.*`), old LayerNorm `gamma`/`beta` renamed `weight`/`bias`."""
    if not prefixed and name.startswith(("embeddings.", "encoder.", "pooler.")):
        name = "bert." + name
    if ".LayerNorm." in name:
        name = re.sub(r"\.gamma$", ".weight", name)
        name = re.sub(r"\.beta$", ".bias", name)
    return name
