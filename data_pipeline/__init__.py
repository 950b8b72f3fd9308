"""Raw text -> tokenizer -> instances -> TFRecord shards + manifest -> tf.data.

Entry points (absl apps):
  python -m data_pipeline.train_tokenizer   train a SentencePiece model
  python -m data_pipeline.build             write mlm / seq2seq / lm shards
  python -m data_pipeline.inspect DIR       print a manifest and examples
  python -m data_pipeline.google_records    manifest for Google-made records

The trainer reads the shards through `data_pipeline.input.make_dataset`.
"""

__version__ = "0.1.0"
