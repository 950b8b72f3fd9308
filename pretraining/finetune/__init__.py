"""Fine-tuning: `python -m pretraining.finetune` trains a classifier
(single-label, multi-label or regression head on the pooled `[CLS]`) on
labelled data, starting from one of our runs, a Google BERT checkpoint or a
Hugging Face directory (`--init`), and reports the dev metrics, the best
checkpoint and test predictions (docs/finetuning.md)."""
