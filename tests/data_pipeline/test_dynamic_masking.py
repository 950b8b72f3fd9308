import json
import os

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import build
from data_pipeline import corpus
from data_pipeline import dynamic_masking
from data_pipeline import input as input_lib
from data_pipeline import masking
from data_pipeline import native
from data_pipeline import vocab_layout
from tests.data_pipeline import masking_reference
from tests.data_pipeline import reference

VOCAB, P, L, B = 1000, 20, 128, 500
# A WordPiece-like layout: specials away from 0-4 and a reserved run.
LAYOUT = vocab_layout.VocabLayout(
    VOCAB, {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103},
    ((1, 100), (104, 110)))


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((B, L), np.int32)
    starts = np.ones((B, L), np.int32)
    normal = np.flatnonzero(~LAYOUT.is_special)
    for row in range(B):
        n = int(rng.integers(10, L - 1))
        ids[row, 0], ids[row, n + 1] = 101, 102
        ids[row, 1:n + 1] = rng.choice(normal, n)
        ids[row, 1:n + 1][rng.random(n) < 0.02] = 100  # [UNK]
        starts[row, 1:n + 1] = rng.random(n) < 0.6
    return {"input_ids": tf.constant(ids), "word_starts": tf.constant(starts)}


@pytest.fixture(scope="module")
def masked():
    batch = _batch()
    masker = dynamic_masking.DynamicMasker(LAYOUT, P)
    out = masker(batch, dynamic_masking.batch_seed(7, 0, 3))
    return ({k: v.numpy() for k, v in batch.items()},
            {k: v.numpy() for k, v in out.items()})


def test_statistics_match_static_semantics(masked):
    batch, out = masked
    assert "word_starts" not in out
    assert out["masked_lm_positions"].shape == (B, P)
    eligible = chosen = n_mask = n_same = 0
    for row in range(B):
        tokens, ws = batch["input_ids"][row], batch["word_starts"][row]
        k = int(out["masked_lm_weights"][row].sum())
        n_elig = int((~LAYOUT.is_special[tokens]).sum())
        assert 1 <= k <= min(P, max(1, round(n_elig * 0.15)))
        np.testing.assert_array_equal(out["masked_lm_weights"][row],
                                      np.arange(P) < k)
        pos = out["masked_lm_positions"][row, :k]
        assert np.all(np.diff(pos) > 0) and not out["masked_lm_positions"][
            row, k:].any()
        np.testing.assert_array_equal(out["masked_lm_ids"][row, :k], tokens[pos])
        assert not LAYOUT.is_special[tokens[pos]].any()
        untouched = np.ones(L, bool)
        untouched[pos] = False
        np.testing.assert_array_equal(out["input_ids"][row][untouched],
                                      tokens[untouched])
        new = out["input_ids"][row][pos]
        assert not LAYOUT.is_special[new[new != 103]].any()
        n_mask += int((new == 103).sum())
        n_same += int((new == tokens[pos]).sum())
        chosen_set = set(pos.tolist())
        for group in masking_reference.groups(tokens, ws, LAYOUT.is_special):
            assert sum(p in chosen_set for p in group) in (0, len(group))
        eligible += n_elig
        chosen += k
    assert 0.135 < chosen / eligible < 0.155, chosen / eligible
    assert abs(n_mask / chosen - 0.8) < 0.025
    assert abs(n_same / chosen - 0.1) < 0.02


def test_deterministic_per_seed_and_batch_index():
    batch = _batch(1)
    masker = dynamic_masking.DynamicMasker(LAYOUT, P)

    def run(*key):
        return masker(batch, dynamic_masking.batch_seed(*key))[
            "masked_lm_positions"].numpy()

    np.testing.assert_array_equal(run(1, 0, 5), run(1, 0, 5))
    assert not np.array_equal(run(1, 0, 5), run(2, 0, 5))
    assert not np.array_equal(run(1, 0, 5), run(1, 0, 6))
    assert not np.array_equal(run(1, 0, 5), run(1, 1, 5))


def _reference(batch, key, preds, whole_word=True):
    """The masking reference on every row, with dynamic masking's draws."""
    ids, starts = batch["input_ids"].numpy(), batch["word_starts"].numpy()
    draws = masking_reference.hashed_draws(key.numpy(), *ids.shape, preds)
    rows = [masking_reference.mask_row(
        ids[r], starts[r], draws[r], layout=LAYOUT, whole_word=whole_word,
        max_predictions_per_seq=preds)
        for r in range(len(ids))]
    return {name: np.stack([getattr(row, name) for row in rows]) for name in
            ("input_ids", "masked_lm_positions", "masked_lm_ids",
             "masked_lm_weights")}


def test_hashed_bits_equal_numpy():
    for key in ([0, 0], [-3, 2**40 + 7], [2**63 - 1, -2**63]):
        for stream in (0, 1, 2):
            got = dynamic_masking.hashed_bits(
                tf.constant(key, tf.int64), stream, [3, 50]).numpy()
            np.testing.assert_array_equal(
                got.ravel(), masking_reference.hashed_bits(key, stream, 150))


def _varied_batch(seed, rows=64):
    """Rows of every length (0: only [CLS] [SEP], nothing eligible), word
    lengths from ~1 to ~5 tokens, [UNK] and [SEP] splitting words."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((rows, L), np.int32)
    starts = np.zeros((rows, L), np.int32)
    normal = np.flatnonzero(~LAYOUT.is_special)
    for row in range(rows):
        n = 0 if row % 16 == 0 else int(rng.integers(1, L - 1))
        ids[row, 0], ids[row, n + 1] = 101, 102
        ids[row, 1:n + 1] = rng.choice(normal, n)
        ids[row, 1:n + 1][rng.random(n) < 0.03] = 100
        ids[row, 1:n + 1][rng.random(n) < 0.02] = 102
        starts[row, 1:n + 1] = rng.random(n) < rng.choice([0.2, 0.5, 0.9])
    return {"input_ids": tf.constant(ids), "word_starts": tf.constant(starts)}


def _implementation(name):
    """Skips the compiled kernel's tests when it is not built, except in CI,
    where `make install` builds it and its absence is a failure."""
    if name == "native" and native.load() is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the dynamic-masking kernel {native.library_path()}"
                        f" is not built (`{native.BUILD_COMMAND}`)")
        pytest.skip(f"kernel not built (`{native.BUILD_COMMAND}`)")
    return name


@pytest.mark.parametrize("implementation", ["ops", "native"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("preds,whole_word", [(20, True), (4, True),
                                              (20, False)])
def test_equals_reference(seed, preds, whole_word, implementation):
    batch = _varied_batch(seed)
    masker = dynamic_masking.DynamicMasker(
        LAYOUT, preds, whole_word=whole_word,
        implementation=_implementation(implementation))
    key = dynamic_masking.batch_seed(seed, 0, 11)
    got = masker(batch, key)
    want = _reference(batch, key, preds, whole_word)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name].numpy(), want[name],
                                      err_msg=name)
    weights = want["masked_lm_weights"]
    assert not weights[::16].any()  # no eligible tokens: nothing masked
    if preds == 4:  # P caps the target of the long rows
        assert (weights.sum(1) == preds).mean() > 0.5


@pytest.mark.parametrize("implementation", ["ops", "native"])
def test_budget_equals_static_masking_up_to_512(implementation):
    """Row n has n eligible one-token words (n = 1 .. 512): every budget is
    spent, so the count is min(P, max(1, round(n * rate))) with the product
    in float64, as static masking's, also where float32 rounds the other way
    (190 * 0.15: 28, not 29)."""
    length, preds = 514, 512
    n = np.arange(1, 513)
    ids = np.where(np.arange(length)[None, :] <= n[:, None], 500, 0)
    ids[:, 0], ids[np.arange(512), n + 1] = 101, 102
    starts = np.ones_like(ids)
    batch = {"input_ids": tf.constant(ids, tf.int32),
             "word_starts": tf.constant(starts, tf.int32)}
    for prob in (0.15, 0.1, 0.2, 0.3):
        masker = dynamic_masking.DynamicMasker(
            LAYOUT, preds, prob, whole_word=False,
            implementation=_implementation(implementation))
        got = masker(dict(batch), dynamic_masking.batch_seed(0, 0, 0))
        counts = got["masked_lm_weights"].numpy().sum(axis=1)
        static = masking.mask_batch(
            ids, np.full(512, length), starts.astype(bool),
            np.random.default_rng(0), max_predictions_per_seq=preds,
            masked_lm_prob=prob, layout=LAYOUT).num_predictions
        want = np.maximum(1, np.rint(n * prob))  # NumPy float64
        np.testing.assert_array_equal(counts, want, err_msg=str(prob))
        np.testing.assert_array_equal(static, want, err_msg=str(prob))
    assert np.rint(190 * 0.15) == 28 != np.rint(np.float32(190)
                                                * np.float32(0.15))


def test_rows_undecided_by_the_first_groups_equal_reference():
    """Two one-token words among two-token ones, odd budget: a row whose
    one-token words both come after the first _PREFIX_GROUPS groups of the
    random order still has one token of budget left there, so the masker
    must redo the batch over all groups, where a one-token word fills it."""
    rows = 16
    ids = np.full((rows, L), 500, np.int32)
    ids[:, 0], ids[:, L - 1] = 101, 102
    starts = np.zeros((rows, L), np.int32)
    starts[:, 2:L - 2:2] = 1  # 62 two-token words
    starts[:, [1, L - 2]] = 1  # and two one-token words: 64 groups
    batch = {"input_ids": tf.constant(ids), "word_starts": tf.constant(starts)}
    assert 64 > dynamic_masking._PREFIX_GROUPS
    assert round((L - 2) * 0.15) == 19  # odd budget
    masker = dynamic_masking.DynamicMasker(LAYOUT, P, implementation="ops")
    key = dynamic_masking.batch_seed(5, 0, 3)
    got, want = masker(batch, key), _reference(batch, key, P)
    for name in want:
        np.testing.assert_array_equal(got[name].numpy(), want[name],
                                      err_msg=name)
    # The rule always reaches the budget here (a one-token word fits).
    np.testing.assert_array_equal(got["masked_lm_weights"].numpy().sum(1), 19)


def test_greedy_passes_equal_sequential_rule():
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 6, (300, 40)).astype(np.int32)
    sizes[rng.random(sizes.shape) < 0.5] = 1
    target = rng.integers(0, 25, 300).astype(np.int32)
    want = np.zeros(sizes.shape, bool)
    for row in range(len(sizes)):
        total = 0
        for g, size in enumerate(sizes[row]):
            if size > 0 and total + size <= target[row]:
                total += size
                want[row, g] = True
    got = dynamic_masking._take_greedily(tf.constant(sizes),
                                         tf.constant(target))
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.fixture(scope="module")
def small_corpus(corpus_file, tmp_path_factory):
    docs = reference.read_documents(corpus_file)[:40]
    path = str(tmp_path_factory.mktemp("small") / "small.txt")
    corpus.write_documents(docs, path)
    return path


@pytest.fixture(scope="module")
def dynamic_dir(small_corpus, tokenizer_path, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dynamic"))
    build.build_mlm(small_corpus, tokenizer_path, out, masking="dynamic",
                    max_seq_length=32, max_predictions_per_seq=5, num_shards=2,
                    seed=3, dupe_factor=2)
    return os.path.join(out, "train")


def test_dataset_same_features_as_static(dynamic_dir, small_corpus,
                                         tokenizer_path, tmp_path):
    static = build.build_mlm(small_corpus, tokenizer_path, str(tmp_path),
                             max_seq_length=32, max_predictions_per_seq=5)
    manifest = input_lib.read_manifest(dynamic_dir)
    assert manifest.masking == "dynamic" and manifest.dupe_factor == 2
    assert 1.8 < manifest.num_examples / static["train"].num_examples < 2.2
    a = input_lib.make_dataset(dynamic_dir, 8, seed=1)
    b = input_lib.make_dataset(str(tmp_path / "train"), 8, seed=1)
    assert a.element_spec == b.element_spec
    evl = input_lib.make_dataset(dynamic_dir, 8, training=False).element_spec
    assert evl == b.element_spec


def test_dataset_masks_reproducible_and_fresh_per_epoch(dynamic_dir):
    manifest = input_lib.read_manifest(dynamic_dir)

    def take(seed, n, skip=0):
        ds = input_lib.make_dataset(dynamic_dir, 8, seed=seed,
                                    skip_batches=skip, shuffle_buffer=1)
        return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]

    per_epoch = manifest.num_examples // 8
    a = take(1, per_epoch + 4)
    resumed = take(1, 4, skip=per_epoch)
    for x, y in zip(a[per_epoch:], resumed):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    # Shuffling is off (buffer 1, seeded file order), so the same record
    # comes back in a later epoch: its mask must differ somewhere.
    first = {tuple(r) for b in a[:per_epoch] for r in b["masked_lm_positions"]}
    later = [tuple(r) for b in a[per_epoch:] for r in b["masked_lm_positions"]]
    assert any(r not in first for r in later)
    other = take(2, 3)
    assert any(not np.array_equal(x["masked_lm_positions"],
                                  y["masked_lm_positions"])
               for x, y in zip(a, other))


def test_manifest_whole_word_setting_reaches_the_masker(
        small_corpus, tokenizer_path, tmp_path, monkeypatch):
    """build --nowhole_word_masking records the setting; the input pipeline
    masks with it; a manifest from before the field reads as True."""
    made = []

    class Spy(dynamic_masking.DynamicMasker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.whole_word)

    monkeypatch.setattr(dynamic_masking, "DynamicMasker", Spy)
    manifests = build.build_mlm(
        small_corpus, tokenizer_path, str(tmp_path), masking="dynamic",
        max_seq_length=32, max_predictions_per_seq=5, whole_word_masking=False)
    train = str(tmp_path / "train")
    assert manifests["train"].whole_word_masking is False
    assert input_lib.read_manifest(train).whole_word_masking is False
    next(iter(input_lib.make_dataset(train, 4, seed=1)))
    manifest_path = tmp_path / "train" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    del data["whole_word_masking"]  # as written before the option existed
    manifest_path.write_text(json.dumps(data))
    assert input_lib.read_manifest(train).whole_word_masking is True
    next(iter(input_lib.make_dataset(train, 4, seed=1)))
    assert made == [False, True]


@pytest.mark.parametrize("pipelines", [2, 3])
def test_per_host_sharding_disjoint_complete(dynamic_dir, pipelines):
    manifest = input_lib.read_manifest(dynamic_dir)
    seen = []
    for i in range(pipelines):
        ctx = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                         input_pipeline_id=i)
        for batch in input_lib.make_dataset(dynamic_dir, 16, training=False,
                                            input_context=ctx):
            real = batch["input_mask"].numpy()[:, 0] > 0
            ids = batch["input_ids"].numpy()[real].copy()
            rows = np.flatnonzero(real)
            for r, row in zip(range(len(ids)), rows):
                k = int(batch["masked_lm_weights"].numpy()[row].sum())
                pos = batch["masked_lm_positions"].numpy()[row, :k]
                ids[r, pos] = batch["masked_lm_ids"].numpy()[row, :k]
            seen.extend(tuple(r) for r in ids)
    stored = [tuple(e["input_ids"]) for e in input_lib.iterate_numpy(
        dynamic_dir)]
    assert sorted(seen) == sorted(stored)
    assert len(seen) == manifest.num_examples


@pytest.mark.parametrize("implementation", ["ops", "native"])
def test_id_outside_vocabulary_is_an_error(implementation):
    batch = _varied_batch(0, rows=4)
    ids = batch["input_ids"].numpy()
    ids[2, 5] = VOCAB + 7
    batch["input_ids"] = tf.constant(ids)
    masker = dynamic_masking.DynamicMasker(
        LAYOUT, P, implementation=_implementation(implementation))
    match = r"input_ids\[2, 5\] = 1007 is outside the vocabulary" if (
        implementation == "native") else "1007"
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        masker(batch, dynamic_masking.batch_seed(0, 0, 0))


def test_native_requested_but_not_built_names_the_fix(monkeypatch):
    monkeypatch.setattr(native, "load", lambda path=None: None)
    with pytest.raises(ValueError, match="python -m data_pipeline.native"):
        dynamic_masking.DynamicMasker(LAYOUT, P, implementation="native")
    with pytest.raises(ValueError, match="implementation"):
        dynamic_masking.DynamicMasker(LAYOUT, P, implementation="fast")
    # "auto" falls back to TensorFlow ops, which give the same masks.
    masker = dynamic_masking.DynamicMasker(LAYOUT, P)
    assert masker._kernel is None


def test_native_library_build_errors_name_the_compiler(tmp_path):
    with pytest.raises(RuntimeError, match="no-such-c\\+\\+.*not found"):
        native.build(str(tmp_path / "op.so"), compiler="no-such-c++")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
