"""What every format is read into and written from: a config, the weights
by our variable path, and the vocabulary.

The variables a config has are taken from the model itself (`v.path` of a
freshly built `BertPretrainer`/`BertEncoder`), so the converter follows the
model code; `checkpoint_names.lookup` gives each its foreign names.
"""

import dataclasses
import functools
import json
import os

import numpy as np
from absl import logging

from pretraining import checkpoint_names
from pretraining.config import BertConfig
from pretraining.formats.vocab import Vocabulary

HEADS = ("all", "encoder")


@dataclasses.dataclass
class Bundle:
    """A model in memory, independent of any file format.

    Args:
        config: `BertConfig`. The model's config. Required.
        weights: dict. Our variable path → float32 array, in model order.
            With heads, the masked-LM head's paths (`mlm/...`) are included,
            and the next-sentence head's (`nsp/...`) when the input had one.
            Required.
        vocab: `Vocabulary` or None. Defaults to None.
        source: str. What was read (for messages). Defaults to "".
        fresh: tuple of str. Paths freshly initialised because the input had
            no value for them (the pooler of a `BertForMaskedLM` save);
            Google and Hugging Face outputs leave them out. Defaults to `()`.
    """

    config: BertConfig
    weights: dict
    vocab: Vocabulary | None = None
    source: str = ""
    fresh: tuple = ()

    @property
    def has_head(self) -> bool:
        return any(path.startswith("mlm/") for path in self.weights)

    @property
    def has_nsp(self) -> bool:
        return any(path.startswith("nsp/") for path in self.weights)

    def exported(self) -> dict:
        """The weights a Google/Hugging Face file gets: tabled and not fresh,
        as (entry, value) by our path."""
        out = {}
        for path, value in self.weights.items():
            entry = checkpoint_names.lookup(path)
            if entry is not None and path not in self.fresh:
                out[path] = (entry, value)
        return out


def read_json(path: str) -> dict:
    """A JSON object from `path`; ValueError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): "
                         "restore the file.") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): restore the file.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object. Received: {type(data).__name__}")
    return data


def build_model(config: BertConfig, head: bool, nsp: bool = False):
    """A fresh `BertPretrainer` (head=True; with the NSP head when `nsp`) or
    `BertEncoder`."""
    from pretraining.pretrainer import BertPretrainer
    from pretraining.model import BertEncoder
    encoder = BertEncoder(config)
    if nsp:
        return BertPretrainer(encoder, next_sentence=True)
    return BertPretrainer(encoder) if head else encoder


@functools.lru_cache(maxsize=8)
def _expected(config_json: str, head: bool, nsp: bool) -> tuple:
    model = build_model(BertConfig.from_dict(json.loads(config_json)), head, nsp)
    return tuple((v.path, tuple(v.shape)) for v in model.weights)


def expected_shapes(config: BertConfig, head: bool, nsp: bool = False) -> dict:
    """Our variable path → shape, for a model of `config` (with the MLM head
    when `head`, and the NSP head when `nsp`), in `model.weights` order."""
    return dict(_expected(config.to_json(), head, nsp))


def assign(model, weights: dict, where: str) -> None:
    """Sets every variable of `model` from `weights` (by `v.path`)."""
    missing = [v.path for v in model.weights if v.path not in weights]
    if missing:
        raise ValueError(f"{where}: no value for {missing[:10]}")
    for v in model.weights:
        value = weights[v.path]
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"{where}: {v.path} has shape {tuple(value.shape)}, the model "
                             f"expects {tuple(v.shape)}")
        v.assign(value)


@dataclasses.dataclass
class TableRead:
    """What `read_by_table` found.

    Args:
        weights: dict. Our path → float32 array. Required.
        fresh: tuple of str. Paths initialised here (no value in the file).
            Defaults to `()`.
    """

    weights: dict
    fresh: tuple = ()


def _part_names(entries: dict, part: str, name_of) -> list:
    return [name_of(e) for e in entries.values() if e is not None and e.part == part]


def read_by_table(config: BertConfig, heads: str, names: dict, get, name_of, transpose_of,
                  where: str, ignorable, is_bert_name, config_source: str) -> TableRead:
    """Reads every tabled variable of a `config` model from a foreign checkpoint.

    The encoder must be complete, except the pooler: a file without one (a
    `BertForMaskedLM` save) gets a freshly initialised pooler, listed in
    `fresh`. The MLM and NSP heads are read when `heads="all"` and the file
    has them whole. Tensors that are not BERT's (task heads such as
    `classifier.*`) are listed in one warning and skipped; a BERT-looking
    tensor the config lacks (`is_bert_name`, e.g. a layer beyond
    `num_hidden_layers`) is an error, as are missing tensors and shapes.

    Args:
        config: `BertConfig` the checkpoint should fit.
        heads: `all` (encoder + the heads the file has) or `encoder`.
        names: dict of the file's tensor names → shapes.
        get: callable name → array.
        name_of: callable `Entry` → the file's name for it.
        transpose_of: callable `Entry` → whether the file stores it transposed.
        where: the file, for messages.
        ignorable: callable name → True for names skipped silently (optimizer
            slots, buffers, tied copies).
        is_bert_name: callable name → True for names of BERT's encoder.
        config_source: where `config` came from, for messages.

    Returns:
        `TableRead`.
    """
    shapes = expected_shapes(config, head=True, nsp=True)
    entries = {path: checkpoint_names.lookup(path) for path in shapes}
    untabled = [p for p, e in entries.items() if e is None]
    if untabled:
        logging.warning("Not in %s (no Google/Hugging Face name; left at initialisation): %s",
                        where, untabled)
    use = {}
    for part, label in ((checkpoint_names.MLM, "masked-LM"), (checkpoint_names.NSP,
                                                               "next-sentence")):
        wanted = _part_names(entries, part, name_of)
        present = [n for n in wanted if n in names]
        use[part] = heads == "all" and bool(present)
        if use[part] and len(present) != len(wanted):
            raise ValueError(f"{where} has only part of the {label} head: missing "
                             f"{sorted(set(wanted) - set(present))}. Use --heads=encoder to "
                             "convert the encoder alone.")
    if heads == "all" and not use[checkpoint_names.MLM]:
        logging.warning("%s has no masked-LM head (%s, ...): converting the encoder only.",
                        where, _part_names(entries, checkpoint_names.MLM, name_of)[0])
        if use[checkpoint_names.NSP]:
            logging.warning("%s: the next-sentence head is not converted without a masked-LM "
                            "head.", where)
            use[checkpoint_names.NSP] = False
    pooler = [name_of(entries[p]) for p in checkpoint_names.POOLER]
    fresh = ()
    if not any(n in names for n in pooler):
        fresh = checkpoint_names.POOLER
        logging.info("%s has no pooler (%s; a BertForMaskedLM save): the pooler is freshly "
                     "initialised and left out of Google/Hugging Face outputs.", where,
                     pooler[0])
    weights, missing, mismatched, used = {}, [], [], set()
    initial = None
    for path, shape in shapes.items():
        entry = entries[path]
        if entry is None or path in fresh:
            if initial is None:
                model = build_model(config, head=True)
                initial = {v.path: np.asarray(v.numpy()) for v in model.weights}
            weights[path] = initial[path]
            continue
        if entry.part != checkpoint_names.ENCODER and not use[entry.part]:
            continue
        name = name_of(entry)
        if name not in names:
            missing.append(name)
            continue
        used.add(name)
        file_shape = tuple(names[name])
        wanted = tuple(reversed(shape)) if transpose_of(entry) else tuple(shape)
        if file_shape != wanted:
            mismatched.append(f"{name}: file {file_shape}, config {wanted}")
            continue
        value = np.asarray(get(name), dtype=np.float32)
        weights[path] = value.T.copy() if transpose_of(entry) else value
    leftover = sorted(n for n in names if n not in used and not ignorable(n))
    head_names = {name_of(e) for e in entries.values()
                  if e is not None and e.part != checkpoint_names.ENCODER}
    skipped_head = [n for n in leftover if n in head_names]
    unknown = [n for n in leftover if n not in head_names and is_bert_name(n)]
    foreign = [n for n in leftover if n not in head_names and not is_bert_name(n)]
    if mismatched or missing or unknown:
        lines = [f"{where} does not fit the config from {config_source}:"]
        if mismatched:
            lines.append(f"  shape mismatch ({len(mismatched)}): " + "; ".join(mismatched[:8]))
        if missing:
            lines.append(f"  missing from the file ({len(missing)}): {missing[:8]}")
        if unknown:
            lines.append(f"  in the file but not in the model ({len(unknown)}): {unknown[:8]}")
        raise ValueError("\n".join(lines))
    if foreign:
        logging.warning("Not BERT's, skipped (%d tensors of %s, e.g. task heads): %s",
                        len(foreign), where, foreign[:20])
    if skipped_head:
        logging.warning("Not converted (--heads=encoder): %d head tensors of %s",
                        len(skipped_head), where)
    logging.info("Read %d tensors from %s.", len(used), where)
    return TableRead(weights, fresh)


def resize_vocabulary(bundle: Bundle, keep_ids=None, add_tokens=None) -> Bundle:
    """Vocabulary surgery on the word embedding and the MLM output bias.

    Args:
        bundle: `Bundle`.
        keep_ids: list of int or None. Old ids to keep, in their new order.
        add_tokens: list of str or None. Tokens appended; their embedding rows
            (and MLM biases) start as the mean over the existing rows.

    Returns:
        A new `Bundle` with `vocab_size`, weights and vocabulary resized.
    """
    from pretraining.formats import vocab as vocab_lib
    word_path = "bert/embeddings/word_embeddings/embeddings"
    bias_path = "mlm/output_bias"
    weights = dict(bundle.weights)
    vocab = bundle.vocab
    size = bundle.config.vocab_size
    if keep_ids is not None:
        bad = [i for i in keep_ids if not 0 <= i < size]
        if bad or not keep_ids:
            raise ValueError(f"--keep_tokens: ids must be in [0, {size}) (vocab_size of "
                             f"{bundle.source}). Received: {bad[:10] or 'no ids'}")
        if len(set(keep_ids)) != len(keep_ids):
            repeated = sorted({i for i in keep_ids if keep_ids.count(i) > 1})
            raise ValueError(f"--keep_tokens: repeated ids {repeated[:10]}")
        vocab = vocab_lib.keep(vocab, keep_ids, size)
        for path in (word_path, bias_path):
            if path in weights:
                weights[path] = weights[path][np.asarray(keep_ids)]
        size = len(keep_ids)
    if add_tokens:
        if vocab is None:
            raise ValueError(f"--add_tokens needs the vocabulary of {bundle.source} (none "
                             "found; pass --vocab).")
        vocab = vocab_lib.add(vocab, add_tokens)
        for path in (word_path, bias_path):
            if path in weights:
                rows = weights[path]
                mean = rows.mean(axis=0, keepdims=True).astype(rows.dtype)
                weights[path] = np.concatenate([rows, np.repeat(mean, len(add_tokens), 0)])
        size += len(add_tokens)
    config = dataclasses.replace(bundle.config, vocab_size=size)
    logging.info("Vocabulary resized: %d → %d tokens.", bundle.config.vocab_size, size)
    return dataclasses.replace(bundle, config=config, weights=weights, vocab=vocab)


# Model options that Google's and Hugging Face's BERT formats cannot hold:
# (field, the only value they hold, why). Their code runs every block
# post-LayerNorm with a dense feed-forward layer, whatever the file says.
UNHOLDABLE = (
    ("layer_norm_position", "post",
     "its BERT runs every block post-LayerNorm and has no final LayerNorm"),
    ("feed_forward", "dense",
     "its BERT feed-forward layer is one dense matrix, with no gate (no intermediate_linear)"),
)
FORMAT_NAMES = {"google": "Google", "hf": "Hugging Face"}


def check_holdable(config: BertConfig, output_format: str) -> None:
    """Refuses to write a model to `output_format` ("google" or "hf") when it
    uses a model option that format cannot hold (`UNHOLDABLE`): the file
    would load there as another model. Other formats hold every option.

    Raises:
        ValueError: one line naming the field, its value and why.
    """
    name = FORMAT_NAMES.get(output_format)
    if name is None:
        return
    for field, held, why in UNHOLDABLE:
        value = getattr(config, field)
        if value != held:
            raise ValueError(
                f"model.{field}={value!r} cannot be exported to the {name} format: {why} "
                f"(only {field}={held!r}). Export it with --output_format=native instead.")


def untabled(bundle: Bundle) -> list:
    """Paths of `bundle` with no Google/Hugging Face name."""
    return [p for p in bundle.weights if checkpoint_names.lookup(p) is None]
