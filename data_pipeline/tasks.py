"""Turns one work unit of documents into serialised records, per task.

  mlm      packed `[CLS] tokens [SEP]` (or NSP pairs), masked statically or
           stored with `word_starts` for dynamic masking
  seq2seq  UniLM `[CLS] source [SEP] target [SEP]`, segment ids 0 / 1; from
           (source, target) pairs or consecutive sentence spans
  lm       documents joined with [SEP] and cut into full-length chunks

A unit's random choices come only from (seed, unit index, split), so the
records of a unit do not depend on which process makes them. The common case,
mlm without NSP, is done a unit at a time in NumPy (spans, masking,
serialisation); the others build their instances one by one.
"""

import dataclasses
import hashlib

import numpy as np

from data_pipeline import features
from data_pipeline import instances as instances_lib
from data_pipeline import masking as masking_lib
from data_pipeline import nsp
from data_pipeline import records

SPLITS = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """What records to make.

    Args:
        task: str. "mlm", "seq2seq" or "lm". Defaults to "mlm".
        masking: str. "static" or "dynamic" (mlm); ignored otherwise.
        max_seq_length: int. L (>= 8). Defaults to 128.
        max_predictions_per_seq: int. P (mlm). Defaults to 20.
        masked_lm_prob: float. Defaults to 0.15.
        short_seq_prob: float. Defaults to 0.1.
        next_sentence: bool. mlm sentence pairs with NSP labels.
        pairs: bool. seq2seq documents are (source, target) pairs.
        dupe_factor: int. Times each training document is packed (and
            masked). Defaults to 1.
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


def _instances(cfg, docs, d, rng, layout):
    cls_id, sep_id = layout.cls_id, layout.sep_id
    if cfg.task == "mlm" and not cfg.next_sentence:
        return instances_lib.create_instances(
            [s[0] for s in docs[d]], [s[1] for s in docs[d]], rng,
            max_seq_length=cfg.max_seq_length,
            short_seq_prob=cfg.short_seq_prob, cls_id=cls_id, sep_id=sep_id)
    if cfg.task == "seq2seq" and cfg.pairs:
        source, target = nsp._truncate_pair(  # pylint: disable=protected-access
            docs[d][0], docs[d][1], cfg.max_seq_length - 3, rng)
        if not len(source[0]) or not len(target[0]):
            return []
        return [nsp.pair_instance(source, target, cls_id, sep_id)]
    return nsp.create_pair_instances(
        docs, d, rng, max_seq_length=cfg.max_seq_length,
        short_seq_prob=cfg.short_seq_prob,
        random_next=cfg.task == "mlm", cls_id=cls_id, sep_id=sep_id)


def _mlm_records(cfg, tokens, word_starts, segment_ids, seq_lengths,
                 mask_rng, layout, lengths,
                 next_sentence_labels=None) -> records.RecordBatch:
    """mlm records of padded `[N, L]` instances: masked in one batch as
    `masking.mask_tokens` would mask them one by one, or with
    `word_starts` kept for dynamic masking."""
    length = cfg.max_seq_length
    columns = {"input_ids": tokens,
               "input_mask": np.arange(length) < seq_lengths[:, None],
               "segment_ids": segment_ids}
    if cfg.masking == "static":
        m = masking_lib.mask_batch(
            tokens, seq_lengths, word_starts, mask_rng,
            max_predictions_per_seq=cfg.max_predictions_per_seq,
            masked_lm_prob=cfg.masked_lm_prob, layout=layout)
        columns.update(input_ids=m.input_ids,
                       masked_lm_positions=m.masked_lm_positions,
                       masked_lm_ids=m.masked_lm_ids,
                       masked_lm_weights=m.masked_lm_weights)
    else:
        columns["word_starts"] = word_starts
    if cfg.next_sentence:
        columns["next_sentence_labels"] = next_sentence_labels[:, None]
    return records.serialize_batch(columns, lengths)


def _instance_mlm_records(cfg, insts, mask_rng, layout, lengths):
    """`_mlm_records` of Instance/PairInstance objects."""
    num, length = len(insts), cfg.max_seq_length
    tokens = np.zeros((num, length), np.int32)
    word_starts = np.zeros((num, length), bool)
    segment_ids = np.zeros((num, length), np.int32)
    seq_lengths = np.zeros(num, np.int64)
    for i, inst in enumerate(insts):
        n = len(inst.tokens)
        tokens[i, :n] = inst.tokens
        word_starts[i, :n] = inst.word_starts
        segment_ids[i, :n] = inst.segment_ids
        seq_lengths[i] = n
    labels = np.array([int(getattr(inst, "is_random_next", False))
                       for inst in insts], np.int64)
    return _mlm_records(cfg, tokens, word_starts, segment_ids, seq_lengths,
                        mask_rng, layout, lengths, labels)


def _lm_rows(cfg, docs, layout):
    stream = [np.concatenate([s[0] for s in doc] + [[layout.sep_id]])
              for doc in docs]
    if not stream:
        return []
    stream = np.concatenate(stream).astype(np.int64)
    size = cfg.max_seq_length
    return [{"input_ids": stream[i:i + size],
             "input_mask": np.ones(len(stream[i:i + size]), np.int64)}
            for i in range(0, len(stream), size)]


def _packed_mlm(cfg, ids, starts, doc_ranges, dupes, pack_rng, mask_rng,
                layout, lengths) -> records.RecordBatch:
    """mlm records without NSP for documents at token ranges `doc_ranges`
    of the unit's stream: the instances of `instances.create_instances`,
    masked as `masking.mask_tokens` would, all in one batch."""
    span_start, span_size = [], []
    for _ in range(dupes):
        for first, end in doc_ranges:
            for pos, size in instances_lib.pack_spans(
                    end - first, pack_rng, max_seq_length=cfg.max_seq_length,
                    short_seq_prob=cfg.short_seq_prob):
                span_start.append(first + pos)
                span_size.append(size)
    num, length = len(span_start), cfg.max_seq_length
    if not num:
        return records.serialize_batch(
            {name: np.zeros((0, n)) for name, (n, _) in lengths.items()},
            lengths)
    size = np.array(span_size)
    column = np.arange(length - 2)
    inside = column < size[:, None]
    index = np.minimum(np.array(span_start)[:, None] + column, len(ids) - 1)
    rows = np.arange(num)
    tokens = np.zeros((num, length), np.int32)  # [CLS] span [SEP] padding
    tokens[:, 1:-1] = np.where(inside, ids[index], 0)
    tokens[:, 0] = layout.cls_id
    tokens[rows, size + 1] = layout.sep_id
    word_starts = np.zeros((num, length), bool)
    word_starts[:, 1:-1] = inside & starts[index]
    word_starts[:, :2] = True
    word_starts[rows, size + 1] = True
    return _mlm_records(cfg, tokens, word_starts,
                        np.zeros((num, length), np.int32), size + 2,
                        mask_rng, layout, lengths)


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
                 cfg: TaskConfig, *, seed: int,
                 eval_fraction: float) -> dict:
    """Records of one work unit.

    Args:
        documents: list[list[str]]. The unit's documents.
        first_index: int. Global index of `documents[0]` (eval hashing).
        unit: int. Unit index (seeds its random choices).
        tokenizer: a `tokenization.load_tokenizer` tokenizer.
        cfg: TaskConfig.
        seed: int. Build seed.
        eval_fraction: float. Held-out fraction of documents.

    Returns:
        {"train": RecordBatch, "eval": RecordBatch, "text_bytes": int}.
    """
    layout = tokenizer.layout
    lengths = cfg.lengths()
    flat = [s for doc in documents for s in doc]
    ids, starts, sizes = _encode(tokenizer, flat)
    sentence_end = np.cumsum(sizes)
    sentence_start, sentence_end = ((sentence_end - sizes).tolist(),
                                    sentence_end.tolist())
    by_split = {name: [] for name in SPLITS}  # (first sentence, end) per doc
    sentence = 0
    for d, doc in enumerate(documents):
        split = ("eval" if is_eval_document(seed, first_index + d,
                                            eval_fraction) else "train")
        by_split[split].append((sentence, sentence + len(doc)))
        sentence += len(doc)
    out = {"text_bytes": len("".join(flat).encode("utf-8"))}
    for split_index, split in enumerate(SPLITS):
        pack_rng = np.random.default_rng([seed, unit, split_index, 0])
        mask_rng = np.random.default_rng([seed, unit, split_index, 1])
        dupes = cfg.dupe_factor if split == "train" else 1
        if cfg.task == "mlm" and not cfg.next_sentence:
            doc_ranges = [(sentence_start[a], sentence_end[b - 1])
                          for a, b in by_split[split]]
            out[split] = _packed_mlm(cfg, ids, starts, doc_ranges, dupes,
                                     pack_rng, mask_rng, layout, lengths)
            continue
        docs = []
        for a, b in by_split[split]:
            docs.append([(ids[first:end], starts[first:end]) for first, end
                         in zip(sentence_start[a:b], sentence_end[a:b])])
        if cfg.task == "lm":
            rows = _lm_rows(cfg, docs, layout)
            out[split] = records.serialize_batch(
                records.pad_rows(rows, lengths), lengths)
            continue
        insts = [inst for _ in range(dupes) for d in range(len(docs))
                 for inst in _instances(cfg, docs, d, pack_rng, layout)]
        if cfg.task == "mlm":
            out[split] = _instance_mlm_records(cfg, insts, mask_rng, layout,
                                               lengths)
            continue
        rows = [{"input_ids": inst.tokens,
                 "input_mask": np.ones(len(inst.tokens)),
                 "segment_ids": inst.segment_ids} for inst in insts]
        out[split] = records.serialize_batch(records.pad_rows(rows, lengths),
                                             lengths)
    return out
