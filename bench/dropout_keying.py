#!/usr/bin/env python
"""What keying dropout on the example costs: config S's forward+backward
(XLA, dropout 0.1 on the hidden states and attention probabilities) with the
dropout of before and after, alternated in one process.

Variants (the same model and weights; only the dropout layers differ):
  before   8-bit fields, 2 seed words drawn per call from the layer's seed
           generator, one counter over the whole tensor (the dropout before
           masks were keyed on the example; copied here).
  keyed8   keyed on (step seed, layer, global example index, position),
           8-bit fields.
  keyed16  the same with 16-bit fields: what `pretraining.dropout.Dropout`
           runs in the trainer (rates in 1/65536).
  none     no dropout (the share of the step dropout takes).

Prints the median time of each and the ratios to `before` (each repetition
runs every variant once, in turn, so a load change hits all of them); then
the same for the step's dropout alone (its 13 dropout calls' shapes,
forward+backward under XLA), whose difference is the keying's cost without
the rest of the step's noise.

Run: python -m bench.dropout_keying [--reps 9] [--batch 32]
"""

import argparse
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "peers"))
from common import get_config  # noqa: E402
from pretraining import cpu_env  # noqa: E402

cpu_env.apply_defaults()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf
    from keras import ops

    from pretraining import dropout
    from pretraining.config import BertConfig
    from pretraining.model import BertEncoder
    from pretraining.pretrainer import BertPretrainer

    def before_dropout(inputs, rate, seed):
        """The previous `hashed_dropout`: 8-bit fields, one counter."""
        shape = tuple(inputs.shape)
        threshold = dropout._threshold(rate, 8)
        bits = dropout.hashed_bits(math.prod(shape) // 4, seed)[None, :]
        shifts = ops.convert_to_tensor([[0], [8], [16], [24]], dtype="uint32")
        fields = ops.bitwise_and(ops.right_shift(bits, shifts),
                                 ops.convert_to_tensor(255, "uint32"))
        keep = ops.reshape(fields >= ops.convert_to_tensor(threshold, "uint32"), shape)
        scale = ops.cast(256.0 / (256 - threshold), inputs.dtype)
        return ops.where(keep, inputs * scale, ops.zeros_like(inputs))

    class Before(dropout.Dropout):
        def call(self, inputs, training=False, key=None):
            seed = keras.random.randint((2,), -2 ** 31, 2 ** 31 - 1, dtype="int32",
                                        seed=self.seed_generator)
            return before_dropout(inputs, self.rate, seed)

    class Keyed8(dropout.Dropout):
        def call(self, inputs, training=False, key=None):
            return dropout.hashed_dropout(inputs, self.rate, key[0], key[1], field_bits=8)

    c = get_config("S", args.batch)
    config = BertConfig(vocab_size=c["vocab"], hidden_size=c["hidden"],
                        num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                        intermediate_size=c["intermediate"], max_position_embeddings=512,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(5, c["vocab"], (c["batch"], c["seq"])).astype("int32"),
             "segment_ids": np.zeros((c["batch"], c["seq"]), "int32"),
             "input_mask": np.ones((c["batch"], c["seq"]), "int32"),
             "masked_lm_positions": np.sort(rng.choice(c["seq"], (c["batch"], c["n_mask"])),
                                            axis=1).astype("int32"),
             "masked_lm_ids": rng.integers(5, c["vocab"], (c["batch"], c["n_mask"])),
             "example_index": np.arange(c["batch"], dtype="int32")}
    batch = {k: tf.constant(v) for k, v in batch.items()}

    def swap(model, cls):
        """Replaces every dropout layer of the encoder by `cls` (same rate)."""
        encoder = model.encoder
        owners = [(encoder.embeddings, "dropout")]
        for layer in encoder.transformer_layers:
            owners += [(layer.attention, "dropout"), (layer, "attention_dropout"),
                       (layer, "output_dropout")]
        for owner, name in owners:
            # Past Keras's tracking (the layers are built): the bench's own
            # model, whose layers' `call`s read these attributes when traced.
            object.__setattr__(owner, name, cls(getattr(owner, name).rate, seed=1))

    def make(variant):
        keras.utils.set_random_seed(0)
        encoder_config = config if variant != "none" else BertConfig.from_dict(
            dict(config.to_dict(), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
        model = BertPretrainer(BertEncoder(encoder_config), "mlm")
        if variant == "before":
            swap(model, Before)
        elif variant == "keyed8":
            swap(model, Keyed8)
        step = tf.Variable(0, dtype=tf.int64)

        @tf.function(jit_compile=True)
        def forward_backward(batch):
            inputs = dict(batch, dropout_seed=dropout.step_seed(3, step))
            with tf.GradientTape() as tape:
                logits = model(inputs, training=True)["masked_lm_logits"]
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    batch["masked_lm_ids"], logits, from_logits=True))
            grads = tape.gradient(loss, model.trained_variables())
            step.assign_add(1)
            return loss, tf.add_n([tf.reduce_sum(tf.convert_to_tensor(g)) for g in grads])

        return forward_backward

    def make_dropout_only(variant):
        """The step's dropout calls alone: embeddings, then per layer the
        attention probabilities and two hidden states."""
        hidden, probs = (c["batch"], c["seq"], c["hidden"]), (c["batch"], c["heads"], c["seq"],
                                                                 c["seq"])
        xs = [tf.random.normal(s) for s in [hidden] + [probs, hidden, hidden] * c["layers"]]
        layers = [{"before": Before, "keyed8": Keyed8}.get(variant, dropout.Dropout)(0.1, seed=i)
                  for i in range(len(xs))]
        key = (dropout.step_seed(3, 0), tf.range(c["batch"]))

        @tf.function(jit_compile=True)
        def run(xs):
            with tf.GradientTape() as tape:
                tape.watch(xs)
                total = tf.add_n([tf.reduce_sum(d(x, training=True,
                                                  key=dropout.fold_key(key, i)))
                                  for i, (d, x) in enumerate(zip(layers, xs))])
            return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(total, xs)])

        return lambda _: (None, run(xs))

    def measure(title, functions):
        names = list(functions)
        for name in names:  # compile
            functions[name](batch)[1].numpy()
        times = {name: [] for name in names}
        for _ in range(args.reps):
            for name in names:
                start = time.perf_counter()
                functions[name](batch)[1].numpy()
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["before"])
        print(f"{title}, batch {c['batch']}, {args.reps} alternated repetitions")
        for name in names:
            median = statistics.median(times[name])
            ratios = [t / b for t, b in zip(times[name], times["before"])]
            print(f"  {name:8s} median {1000 * median:8.1f} ms  min {1000 * min(times[name]):8.1f}"
                  f" ms  ratio to before {median / base:.3f} (per repetition: median "
                  f"{statistics.median(ratios):.3f}, {min(ratios):.3f}-{max(ratios):.3f})")

    variants = ["before", "keyed8", "keyed16", "none"]
    measure("config S forward+backward under XLA", {name: make(name) for name in variants})
    measure("its dropout alone, forward+backward under XLA",
            {name: make_dropout_only(name) for name in variants[:3]})


if __name__ == "__main__":
    main()
