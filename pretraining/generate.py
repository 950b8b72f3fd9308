"""Generate text from a causal-LM or seq2seq run: `python -m pretraining.generate`.

    python -m pretraining.generate --model_dir=runs/sample_lm/model \\
        --tokenizer=runs/demo/data/spm.model --prompt="Return the"
    python -m pretraining.generate --model_dir=runs/sample_seq2seq/model \\
        --tokenizer=runs/demo/data/spm.model --prompt="Open a file." --method=beam

    python -m pretraining.generate --model_dir=runs/sample_conditional_lm/model \
        --tokenizer=runs/demo/data/spm.model --prompt="Return the" --condition=email,json

For `lm` runs the prompt is continued; for `seq2seq` runs it is the source
and the target is generated. Prints one line per prompt. A conditioned run
needs its condition: `--condition=LABEL` (class labels of the run's records;
`a,b` prints one block per label, each under a `[condition=LABEL]` line) or
`--condition_vector=JSON` (a list of floats, or a list of such lists). A prompt longer
than the model's length leaves room for --max_new_tokens by keeping its last
tokens (a warning says how many were dropped). The checkpoint is checked
against the run's config.json (every variable's shape, the layer count).

Exit status: 0 done; 2 bad flag, run directory or checkpoint (one line).
"""

import json
import os
import sys

from absl import flags, logging

from pretraining import cli


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program, so importing the
    module next to `pretraining.convert` adds no clashing flags)."""
    flags.DEFINE_string("model_dir", None, "Run directory written by pretraining.train.")
    flags.DEFINE_string("tokenizer", None, "The run's tokenizer (SentencePiece .model or vocab.txt).")
    flags.DEFINE_multi_string("prompt", [], "Prompt (lm) or source text (seq2seq); repeatable.")
    flags.DEFINE_enum("method", "greedy", ["greedy", "sample", "beam"], "Decoding method.")
    flags.DEFINE_integer("max_new_tokens", 32, "Tokens to generate.", lower_bound=1)
    flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
    flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0: all).", lower_bound=0)
    flags.DEFINE_float("top_p", 1.0, "Nucleus sampling threshold.")
    flags.DEFINE_integer("num_beams", 4, "Beam width for --method=beam.", lower_bound=1)
    flags.DEFINE_integer("min_new_tokens", 1, "No [SEP] before this many tokens.", lower_bound=0)
    flags.DEFINE_integer("seed", 0, "Sampling seed.")
    flags.DEFINE_bool("ema", False, "Use the run's EMA weights (if it kept them).")
    flags.DEFINE_string("condition", "", "Class-conditioned runs: the label(s) to generate "
                        "for, comma-separated (one block of output each).")
    flags.DEFINE_string("condition_vector", "", "Vector-conditioned runs: a JSON list of "
                        "condition_size floats, or a list of such lists (one block each).")
    flags.mark_flags_as_required(["model_dir", "tokenizer"])  # --prompt: checked in run


def load_run(model_dir: str, ema: bool = False):
    """The trained `BertPretrainer` of a run directory, with its latest weights."""
    import tensorflow as tf
    from pretraining import checkpoints
    from pretraining.config import ExperimentConfig
    from pretraining.pretrainer import BertPretrainer
    from pretraining.model import BertEncoder

    config_path = os.path.join(model_dir, "config.json")
    if not tf.io.gfile.exists(config_path):
        raise ValueError(f"--model_dir={model_dir!r} has no config.json: give the directory "
                         "that pretraining.train wrote.")
    with tf.io.gfile.GFile(config_path) as f:
        try:
            data = json.loads(f.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{config_path} is not valid JSON ({e}).") from None
    try:
        experiment = ExperimentConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"In {config_path}: {e}") from None
    model = BertPretrainer(BertEncoder(experiment.model), experiment.task)
    prefix = checkpoints.find_prefix(model_dir, "--model_dir")
    checkpoints.restore_weights(prefix, model, ("encoder", "masked_lm"),
                                config_source=config_path)
    if ema:
        checkpoints.swap_in_ema(prefix, model)
    return experiment, model


def context_ids(tokenizer, prompt: str, task: str, length: int, max_new_tokens: int,
                index: int = 0) -> list[int]:
    """The ids a prompt starts generation from; a prompt too long for the
    model keeps its last tokens, with a warning saying how many were dropped."""
    ids = tokenizer.encode(prompt)
    # lm: documents follow a [SEP] in the packed stream; seq2seq: [CLS] source [SEP].
    head, tail = ([tokenizer.sep_id], []) if task == "lm" else (
        [tokenizer.cls_id], [tokenizer.sep_id])
    room = length - max_new_tokens - len(head) - len(tail)
    if room < 1:
        raise ValueError(f"--max_new_tokens={max_new_tokens} leaves no room for a prompt in "
                         f"the model's length (max_position_embeddings={length}, "
                         f"{len(head) + len(tail)} special token(s)): use --max_new_tokens <= "
                         f"{length - len(head) - len(tail) - 1}.")
    if len(ids) > room:
        logging.warning("--prompt %d has %d tokens; kept its last %d and dropped %d to leave "
                        "room for --max_new_tokens=%d in the model's length %d.", index + 1,
                        len(ids), room, len(ids) - room, max_new_tokens, length)
        ids = ids[len(ids) - room:]
    return head + ids + tail


def run(model_dir, tokenizer_path, prompts, options, ema=False, condition="",
        condition_vector="") -> list[str]:
    """The generated texts, one per prompt (per condition block, in order)."""
    blocks = generate_blocks(model_dir, tokenizer_path, prompts, options, ema, condition,
                             condition_vector)
    return [text for _, texts in blocks for text in texts]


def _run_condition(model_dir: str):
    """The `condition` of the run's records (its `data_manifest.json`), or None."""
    import tensorflow as tf
    path = os.path.join(model_dir, "data_manifest.json")
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        try:
            return json.loads(f.read()).get("condition")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e}).") from None


def generate_blocks(model_dir, tokenizer_path, prompts, options, ema=False, condition="",
                    condition_vector="") -> list[tuple]:
    """`[(condition name or None, texts one per prompt)]`: one block per
    condition given (`--condition=a,b`, `--condition_vector`), one unnamed
    block for an unconditioned run."""
    import numpy as np
    from data_pipeline.tokenization import load_tokenizer
    from pretraining import conditioning
    from pretraining.generation import Generator

    if not prompts:
        raise ValueError("--prompt is required (repeat it for several prompts).")
    experiment, model = load_run(model_dir, ema)
    if experiment.task not in ("lm", "seq2seq"):
        raise ValueError(f"--model_dir holds a {experiment.task!r} run; generation needs an "
                         "'lm' or 'seq2seq' run.")
    names, conditions = conditioning.generation_conditions(
        experiment.model, _run_condition(model_dir), condition, condition_vector)
    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.vocab_size != experiment.model.vocab_size:
        raise ValueError(f"--tokenizer has {tokenizer.vocab_size} tokens, the model "
                         f"{experiment.model.vocab_size}: use the run's own tokenizer.")
    length = experiment.model.max_position_embeddings
    contexts = [context_ids(tokenizer, prompt, experiment.task, length,
                            options.max_new_tokens, i) for i, prompt in enumerate(prompts)]
    ids = np.zeros((len(contexts), length), "int32")
    for i, context in enumerate(contexts):
        ids[i, :len(context)] = context
    mask = (np.arange(length)[None] < np.array([[len(c)] for c in contexts])).astype("int32")
    generator = Generator(model, length, tokenizer.sep_id)
    blocks = []
    for name, value in zip(names, conditions):
        value = None if value is None else np.repeat(value, len(contexts), axis=0)
        out = generator.generate(ids, mask, np.zeros_like(ids), options, condition=value)
        texts = []
        for row in out:
            row = list(row)
            row = row[:row.index(tokenizer.sep_id)] if tokenizer.sep_id in row else row
            texts.append(tokenizer.decode([t for t in row if t > 0]))
        blocks.append((name, texts))
    return blocks


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]} (quote a --prompt with spaces).")
    from pretraining.generation import GenerationConfig
    f = flags.FLAGS
    options = GenerationConfig(
        method=f.method, max_new_tokens=f.max_new_tokens,
        temperature=f.temperature, top_k=f.top_k, top_p=f.top_p, num_beams=f.num_beams,
        min_new_tokens=f.min_new_tokens, seed=f.seed)
    blocks = generate_blocks(f.model_dir, f.tokenizer, f.prompt, options, f.ema, f.condition,
                             f.condition_vector)
    for name, texts in blocks:
        if name is not None:
            sys.stdout.write(f"[condition={name}]\n")
        for prompt, text in zip(f.prompt, texts):
            sys.stdout.write(f"{prompt} => {text}\n")


if __name__ == "__main__":
    cli.run(main, define_flags)  # bad flags or run directory: one line, exit 2
