"""The converter and the model options Google's and Hugging Face's BERT formats
cannot hold (`model.layer_norm_position="pre"`, `model.feed_forward="glu"`):
refused for those formats in one line (exit 2), nothing written; native holds
them; the defaults still export."""

import os
import subprocess
import sys

import numpy as np
import pytest

from pretraining import convert
from pretraining.config import BertConfig
from pretraining.formats import hf_classifier
from pretraining.formats.bundle import Bundle, build_model


def _config(repo_root, **fields):
    data = BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json").to_dict()
    return BertConfig.from_dict({**data, **fields})


def _bundle(config):
    rng = np.random.default_rng(0)
    weights = {v.path: rng.normal(0, 0.1, v.shape).astype("float32")
               for v in build_model(config, head=True).weights}
    return Bundle(config, weights, None, "test")


@pytest.mark.parametrize("fields, output_format, message", [
    ({"layer_norm_position": "pre"}, "google",
     "error: model.layer_norm_position='pre' cannot be exported to the Google format: its "
     "BERT runs every block post-LayerNorm and has no final LayerNorm (only "
     "layer_norm_position='post'). Export it with --output_format=native instead."),
    ({"feed_forward": "glu"}, "hf",
     "error: model.feed_forward='glu' cannot be exported to the Hugging Face format: its "
     "BERT feed-forward layer is one dense matrix, with no gate (no intermediate_linear) "
     "(only feed_forward='dense'). Export it with --output_format=native instead."),
])
def test_cli_refuses_in_one_line(repo_root, tmp_path, fields, output_format, message):
    native = str(tmp_path / "native")
    convert.save(_bundle(_config(repo_root, **fields)), native, "native")
    output = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pretraining.convert", f"--input={native}",
         "--input_format=native", f"--output={output}", f"--output_format={output_format}"],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()
              and "oneDNN" not in line]
    assert errors == [message], result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()  # nothing half-written


@pytest.mark.parametrize("output_format", ["google", "hf"])
def test_every_writer_refuses(repo_root, tmp_path, output_format):
    """Through the library too: `save`, and the classifier export of a
    fine-tuned model (`write_with_head`); both options, either format."""
    for fields in ({"layer_norm_position": "pre"}, {"feed_forward": "glu"}):
        bundle = _bundle(_config(repo_root, **fields))
        field = next(iter(fields))
        with pytest.raises(ValueError, match=f"^model.{field}="):
            convert.save(bundle, str(tmp_path / "a"), output_format)
        head = hf_classifier.ClassifierHead("single_label", ["a", "b"],
                                            np.zeros((2, 32), "float32"),
                                            np.zeros(2, "float32"))
        with pytest.raises(ValueError, match=f"^model.{field}="):
            hf_classifier.write_with_head(str(tmp_path / "b"), output_format, bundle, head)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_native_holds_the_options_and_defaults_still_export(repo_root, tmp_path):
    config = _config(repo_root, layer_norm_position="pre", feed_forward="glu")
    bundle = _bundle(config)
    convert.save(bundle, str(tmp_path / "native"), "native")
    back = convert.load(str(tmp_path / "native"), "native")
    assert (back.config.layer_norm_position, back.config.feed_forward) == ("pre", "glu")
    assert back.weights.keys() == bundle.weights.keys()
    for path, value in bundle.weights.items():
        np.testing.assert_array_equal(back.weights[path], value)
    for output_format in ("google", "hf"):  # Google's BERT: exported as before
        convert.save(_bundle(_config(repo_root)), str(tmp_path / output_format), output_format)
        back = convert.load(str(tmp_path / output_format), output_format)
        assert (back.config.layer_norm_position, back.config.feed_forward) == ("post", "dense")
