"""Dropout alone, fwd+bwd under XLA, the S step's dropout volume: keras.layers.Dropout vs pretraining.dropout.Dropout, alternated in one process. Run: python bench/dropout_micro.py"""
import time, statistics, os
os.environ["TF_CPP_MIN_LOG_LEVEL"]="3"
import tensorflow as tf, keras
from pretraining.dropout import Dropout
# the S step's dropout volume per layer: 2 x (32,128,256) hidden + (32,4,128,128) attention probs
shapes = [(32,128,256),(32,128,256),(32,4,128,128)]*4 + [(32,128,256)]
xs = [tf.random.normal(s) for s in shapes]
def make(cls):
    ds = [cls(0.1, seed=i) for i in range(len(shapes))]
    @tf.function(jit_compile=True)
    def f(xs):
        with tf.GradientTape() as t:
            t.watch(xs)
            y = tf.add_n([tf.reduce_sum(d(x, training=True)) for d, x in zip(ds, xs)])
        return t.gradient(y, xs)
    return f
fs = {"keras": make(keras.layers.Dropout), "ours": make(Dropout)}
for f in fs.values(): f(xs)
res = {k: [] for k in fs}
for _ in range(15):
    for k, f in fs.items():
        t0 = time.perf_counter(); r = f(xs); _ = r[0].numpy(); res[k].append(time.perf_counter()-t0)
for k, v in res.items(): print(k, "median ms", round(1000*statistics.median(v),1), "min", round(1000*min(v),1))
print("ratio keras/ours (min)", round(min(res["keras"])/min(res["ours"]),2), "(median)", round(statistics.median(res["keras"])/statistics.median(res["ours"]),2))
