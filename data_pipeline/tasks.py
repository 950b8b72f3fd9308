"""Turns one work unit of documents into serialised records, per task.

  mlm      packed `[CLS] tokens [SEP]` (or NSP pairs), masked statically or
           stored with `word_starts` for dynamic masking
  seq2seq  UniLM `[CLS] source [SEP] target [SEP]`, segment ids 0 / 1; from
           (source, target) pairs or consecutive sentence spans
  lm       documents joined with [SEP] and cut into full-length chunks

Per split, one straight line: the task's packer makes one padded batch
(`instances.PackedBatch`), static masking masks it (`masking.mask_batch`),
and the layout's columns of it are serialised (`records.serialize_batch`).
A unit's random choices come only from (seed, unit index, split), so the
records of a unit do not depend on which process makes them.

In a conditioned build every document carries a condition (`conditions`)
and each record stores its document's: a split's documents are packed in
groups of one condition (first-seen order), so no sequence mixes documents
of two conditions (lm streams and NSP's random second segments stay within
a condition's documents of the unit; only a vector with one document in
the unit takes NSP's random segments from the unit's other documents).
"""

import dataclasses
import hashlib

import numpy as np

from data_pipeline import conditions
from data_pipeline import features
from data_pipeline import instances
from data_pipeline import masking
from data_pipeline import nsp
from data_pipeline import records

SPLITS = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """What records to make.

    Args:
        task: str. "mlm", "seq2seq" or "lm". Defaults to "mlm".
        masking: str. "static" or "dynamic" (mlm); ignored otherwise.
            Defaults to "static".
        max_seq_length: int. L (>= 8). Defaults to 128.
        max_predictions_per_seq: int. P (mlm). Defaults to 20.
        masked_lm_prob: float. Fraction of eligible tokens masked (mlm).
            Defaults to 0.15.
        short_seq_prob: float. Probability of a shorter target length when
            packing (mlm, seq2seq spans). Defaults to 0.1.
        next_sentence: bool. mlm sentence pairs with NSP labels. Defaults
            to False.
        pairs: bool. seq2seq documents are (source, target) pairs. Defaults
            to False.
        dupe_factor: int. Times each training document is packed (and
            masked). Defaults to 1.
        whole_word_masking: bool. mlm masks whole words as units; False:
            every word piece on its own (Google's default). Defaults to True.
    """

    task: str = "mlm"
    masking: str = "static"
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    next_sentence: bool = False
    pairs: bool = False
    dupe_factor: int = 1
    whole_word_masking: bool = True

    @property
    def record_masking(self) -> str:
        return self.masking if self.task == "mlm" else "none"

    def lengths(self) -> dict:
        """On-disk feature layout of this task's records."""
        return features.feature_lengths(
            self.task, self.record_masking, self.max_seq_length,
            self.max_predictions_per_seq, self.next_sentence)

    def validate(self) -> None:
        """Raises ValueError naming the flag for inconsistent settings."""
        if self.task not in features.TASKS:
            raise ValueError(f"--task must be one of {list(features.TASKS)}. "
                             f"Received: task={self.task!r}")
        if self.task == "mlm" and self.masking not in ("static", "dynamic"):
            raise ValueError("--masking must be 'static' or 'dynamic'. "
                             f"Received: masking={self.masking!r}")
        if self.next_sentence and self.task != "mlm":
            raise ValueError("--next_sentence applies to --task=mlm only. "
                             f"Received: task={self.task!r}")


def is_eval_document(seed: int, index: int, eval_fraction: float) -> bool:
    """Whether document `index` is held out, from a hash of (seed, index)."""
    if eval_fraction <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < eval_fraction


def _pack(cfg: TaskConfig, ids, starts, docs, dupes: int,
          rng: np.random.Generator, layout,
          members=None) -> instances.PackedBatch:
    """The split's sequences as one padded batch.

    Args:
        cfg: TaskConfig.
        ids, starts: np.ndarray. The unit's token stream and word starts.
        docs: list. Per document, the (first, end) token range of each
            sentence.
        dupes: int. Times each document is packed (mlm and seq2seq).
        rng: np.random.Generator. The split's packing draws.
        layout: VocabLayout. Special ids.
        members: set[int] | None. NSP: make pairs of these documents only
            (random segments still come from any of `docs`). Defaults to
            None (all).
    """
    length = cfg.max_seq_length
    doc_ranges = [(d[0][0], d[-1][1]) for d in docs]
    if cfg.task == "lm":
        return instances.pack_stream(ids, doc_ranges, max_seq_length=length,
                                     sep_id=layout.sep_id)
    if cfg.task == "mlm" and not cfg.next_sentence:
        return instances.pack_documents(
            ids, starts, doc_ranges, rng, max_seq_length=length,
            short_seq_prob=cfg.short_seq_prob, cls_id=layout.cls_id,
            sep_id=layout.sep_id, dupe_factor=dupes)
    sentences = [[(ids[first:end], starts[first:end]) for first, end in d]
                 for d in docs]
    special = dict(max_seq_length=length, cls_id=layout.cls_id,
                   sep_id=layout.sep_id)
    pairs = []
    for _ in range(dupes):
        for d, document in enumerate(sentences):
            if members is not None and d not in members:
                continue
            if cfg.task == "seq2seq" and cfg.pairs:
                pair = nsp.source_target_instance(document, rng, **special)
                pairs.extend([pair] if pair else [])
            else:
                pairs.extend(nsp.create_pair_instances(
                    sentences, d, rng, short_seq_prob=cfg.short_seq_prob,
                    random_next=cfg.task == "mlm", **special))
    return instances.stack(pairs, length, next_sentence=cfg.next_sentence)


def _pack_by_condition(cfg: TaskConfig, ids, starts, docs, values, dupes: int,
                       rng: np.random.Generator, layout,
                       condition: conditions.ConditionSpec):
    """(`_pack` of each group of documents of one condition, concatenated;
    the `condition` column of its rows). NSP pairs of a vector's only
    document in the unit take their random segments from the unit's other
    documents (the pair keeps the first segment's vector)."""
    groups = conditions.group_documents(values) or [[]]
    batches, column = [], []
    for members in groups:
        if (cfg.next_sentence and condition.kind == "vector"
                and len(members) == 1 and len(docs) > 1):
            batch = _pack(cfg, ids, starts, docs, dupes, rng, layout,
                          members=set(members))
        else:
            batch = _pack(cfg, ids, starts, [docs[i] for i in members], dupes,
                          rng, layout)
        batches.append(batch)
        column.extend([values[members[0]]] * len(batch.tokens) if members
                      else [])
    return instances.concat(batches), condition.column(column)


def _columns(cfg: TaskConfig, batch: instances.PackedBatch,
             rng: np.random.Generator, layout) -> dict:
    """The record layout's columns of a packed batch, masked when masking
    is static (drawing from `rng`)."""
    columns = {"input_ids": batch.tokens,
               "input_mask": (np.arange(cfg.max_seq_length)
                              < batch.lengths[:, None]),
               "segment_ids": batch.segment_ids,
               "word_starts": batch.word_starts}
    if batch.next_sentence_labels is not None:
        columns["next_sentence_labels"] = batch.next_sentence_labels[:, None]
    if cfg.record_masking == "static":
        masked = masking.mask_batch(
            batch.tokens, batch.lengths, batch.word_starts, rng,
            max_predictions_per_seq=cfg.max_predictions_per_seq,
            masked_lm_prob=cfg.masked_lm_prob, layout=layout,
            whole_word=cfg.whole_word_masking)
        columns.update(input_ids=masked.input_ids,
                       masked_lm_positions=masked.masked_lm_positions,
                       masked_lm_ids=masked.masked_lm_ids,
                       masked_lm_weights=masked.masked_lm_weights)
    return {name: columns[name] for name in cfg.lengths()}


def _encode(tokenizer, texts):
    """(ids, word starts, ids per text) of all texts as one stream."""
    if hasattr(tokenizer, "encode_flat"):
        return tokenizer.encode_flat(texts)
    ids, starts = tokenizer.encode_with_starts(texts)
    sizes = np.array([len(i) for i in ids], np.int64)
    if not sizes.sum():
        return np.zeros(0, np.int32), np.zeros(0, bool), sizes
    return (np.concatenate([np.asarray(i, np.int32) for i in ids]),
            np.concatenate([np.asarray(w, bool) for w in starts]), sizes)


def process_unit(documents: list, first_index: int, unit: int, tokenizer,
                 cfg: TaskConfig, *, seed: int, eval_fraction: float,
                 condition: conditions.ConditionSpec | None = None) -> dict:
    """Records of one work unit.

    Args:
        documents: list[list[str]]. The unit's documents (non-empty lists
            of sentences); with `condition`, (sentences, encoded condition)
            pairs (`conditions.encode_documents`).
        first_index: int. Global index of `documents[0]` (eval hashing).
        unit: int. Unit index (seeds its random choices).
        tokenizer: a `tokenization.load_tokenizer` tokenizer.
        cfg: TaskConfig.
        seed: int. Build seed.
        eval_fraction: float. Held-out fraction of documents.
        condition: conditions.ConditionSpec | None. The build's condition:
            records get its `condition` feature. Defaults to None.

    Returns:
        {"train": RecordBatch, "eval": RecordBatch, "text_bytes": int,
        "one_sentence_documents": int}.
    """
    values = None
    if condition is not None:
        values = [value for _, value in documents]
        documents = [sentences for sentences, _ in documents]
    flat = [s for doc in documents for s in doc]
    ids, starts, sizes = _encode(tokenizer, flat)
    sentence_end = np.cumsum(sizes).tolist()
    sentences = list(zip([0] + sentence_end[:-1], sentence_end))
    by_split = {name: [] for name in SPLITS}  # sentence ranges per document
    values_by_split = {name: [] for name in SPLITS}
    first = 0
    for d, doc in enumerate(documents):
        split = ("eval" if is_eval_document(seed, first_index + d,
                                            eval_fraction) else "train")
        by_split[split].append(sentences[first:first + len(doc)])
        if values is not None:
            values_by_split[split].append(values[d])
        first += len(doc)
    out = {"text_bytes": len("".join(flat).encode("utf-8")),
           "one_sentence_documents": sum(len(doc) == 1 for doc in documents)}
    for split_index, split in enumerate(SPLITS):
        pack_rng = np.random.default_rng([seed, unit, split_index, 0])
        mask_rng = np.random.default_rng([seed, unit, split_index, 1])
        dupes = cfg.dupe_factor if split == "train" else 1
        if condition is None:
            batch = _pack(cfg, ids, starts, by_split[split], dupes, pack_rng,
                          tokenizer.layout)
            out[split] = records.serialize_batch(
                _columns(cfg, batch, mask_rng, tokenizer.layout), cfg.lengths())
            continue
        batch, column = _pack_by_condition(
            cfg, ids, starts, by_split[split], values_by_split[split], dupes,
            pack_rng, tokenizer.layout, condition)
        columns = _columns(cfg, batch, mask_rng, tokenizer.layout)
        columns["condition"] = column
        out[split] = records.serialize_batch(
            columns, {**cfg.lengths(), "condition": condition.length})
    return out
