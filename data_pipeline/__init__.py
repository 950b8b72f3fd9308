"""Raw text -> tokenizer -> instances -> TFRecord shards + manifest -> tf.data.

Entry points (absl apps):
  python -m data_pipeline.train_tokenizer   train a SentencePiece model
  python -m data_pipeline.build             write masked-LM TFRecord shards

The trainer reads the shards through `data_pipeline.input.make_dataset`.
"""

__version__ = "0.1.0"
