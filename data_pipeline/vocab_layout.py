"""Which ids of a vocabulary are special: never masked, never a random
replacement.

SentencePiece models of this pipeline keep [PAD] [UNK] [CLS] [SEP] [MASK] at
ids 0-4; a BERT `vocab.txt` has them elsewhere (101, 102, 103 ...) plus
`[unusedN]` entries. One `VocabLayout` describes both, and the manifest
stores it (`special_ids`, `reserved_id_ranges`) so tf.data can mask
dynamically with the same rules as the build.
"""

import dataclasses
import functools

import numpy as np

from data_pipeline import features

SPECIAL_NAMES = ("pad", "unk", "cls", "sep", "mask")


def _to_ranges(ids) -> list:
    """Sorted ids -> [[start, end), ...] runs."""
    ranges = []
    for i in sorted(set(int(x) for x in ids)):
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


@dataclasses.dataclass(frozen=True)
class VocabLayout:
    """Special and reserved ids of a vocabulary.

    Args:
        vocab_size: int. Number of ids.
        special_ids: dict. pad/unk/cls/sep/mask -> id.
        reserved_id_ranges: tuple of (start, end) pairs. Further ids treated
            as special (e.g. `[unusedN]`). Defaults to ().
    """

    vocab_size: int
    special_ids: dict = dataclasses.field(
        default_factory=lambda: dict(features.SPECIAL_IDS))
    reserved_id_ranges: tuple = ()

    def __post_init__(self):
        missing = [n for n in SPECIAL_NAMES if n not in self.special_ids]
        if missing:
            raise ValueError(f"`special_ids` must name {list(SPECIAL_NAMES)}. "
                             f"Missing: {missing}. Received: {self.special_ids}")
        bad = {n: i for n, i in self.special_ids.items()
               if not 0 <= int(i) < self.vocab_size}
        if bad:
            raise ValueError(f"Special ids {bad} are outside the vocabulary "
                             f"[0, vocab_size={self.vocab_size}).")

    @classmethod
    def from_special_mask(cls, is_special, special_ids: dict) -> "VocabLayout":
        """Builds a layout from a bool array over the vocabulary."""
        is_special = np.asarray(is_special, bool)
        named = set(int(i) for i in special_ids.values())
        reserved = [i for i in np.flatnonzero(is_special).tolist()
                    if i not in named]
        return cls(len(is_special), dict(special_ids),
                   tuple(tuple(r) for r in _to_ranges(reserved)))

    @classmethod
    def from_manifest(cls, manifest) -> "VocabLayout":
        """The layout a manifest records."""
        return cls(manifest.vocab_size, dict(manifest.special_ids),
                   tuple(tuple(r) for r in manifest.reserved_id_ranges))

    def __getattr__(self, name):
        if name.endswith("_id") and name[:-3] in SPECIAL_NAMES:
            return int(self.special_ids[name[:-3]])
        raise AttributeError(name)

    @functools.cached_property
    def is_special(self) -> np.ndarray:
        """bool `[vocab_size]`: True for special and reserved ids."""
        out = np.zeros(self.vocab_size, bool)
        out[[int(i) for i in self.special_ids.values()]] = True
        for start, end in self.reserved_id_ranges:
            out[start:end] = True
        return out

    @functools.cached_property
    def replacement_ids(self) -> np.ndarray:
        """int32 ids a masked token may be randomly replaced with."""
        ids = np.flatnonzero(~self.is_special).astype(np.int32)
        if not len(ids):
            raise ValueError("The vocabulary has no non-special token to use "
                             "as a random replacement.")
        return ids

    def __hash__(self):
        return hash((self.vocab_size, tuple(sorted(self.special_ids.items())),
                     self.reserved_id_ranges))
