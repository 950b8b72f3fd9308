"""Fine-tuning a pretrained encoder on labelled tasks."""
