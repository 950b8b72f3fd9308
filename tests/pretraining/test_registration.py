"""`import pretraining` registers every Keras-serialisable class: a `.keras`
file saved in one process loads in a fresh one that imports nothing else."""

import ast
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT

SAVE = """
import sys
import numpy as np
from pretraining.config import BertConfig
from pretraining.formats.bundle import build_model
config = BertConfig.from_json(sys.argv[1])
model = build_model(config, head=True)
rng = np.random.default_rng(0)
batch = {"input_ids": rng.integers(5, config.vocab_size, (2, 12)).astype("int32"),
         "input_mask": np.ones((2, 12), "int32"), "segment_ids": np.zeros((2, 12), "int32"),
         "masked_lm_positions": np.array([[1, 4], [2, 9]], "int32")}
logits = np.asarray(model(batch)["masked_lm_logits"])
model.save(sys.argv[2])
np.savez(sys.argv[3], logits=logits, **batch)
"""

LOAD = """
import json, sys
import keras
import numpy as np
import pretraining
model = keras.saving.load_model(sys.argv[1], compile=False)
data = dict(np.load(sys.argv[2]))
logits = np.asarray(model({k: v for k, v in data.items() if k != "logits"})["masked_lm_logits"])
missing = [name for name in json.loads(sys.argv[3])
           if keras.saving.get_registered_object(name) is None]
print(json.dumps({"class": type(model).__name__, "missing": missing,
                  "max_diff": float(np.abs(logits - data["logits"]).max())}))
"""


def _registered_names() -> list:
    """`package>Class` of every class in `pretraining/` decorated with
    `keras.saving.register_keras_serializable(package=...)`."""
    names = []
    for path in sorted(pathlib.Path(REPO_ROOT, "pretraining").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Call)
                        and ast.unparse(decorator.func).endswith("register_keras_serializable")):
                    package = next((ast.literal_eval(k.value) for k in decorator.keywords
                                    if k.arg == "package"), "Custom")
                    names.append(f"{package}>{node.name}")
    return names


def _run(code: str, *args) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_pretraining_registers_every_serialisable_class(tmp_path):
    names = _registered_names()
    assert "pretraining>BertPretrainer" in names and len(names) >= 4, names
    config = f"{REPO_ROOT}/configs/models/bert_test.json"
    _run(SAVE, config, tmp_path / "model.keras", tmp_path / "batch.npz")
    out = json.loads(_run(LOAD, tmp_path / "model.keras", tmp_path / "batch.npz",
                          json.dumps(names)).strip().splitlines()[-1])
    assert out["class"] == "BertPretrainer"
    assert out["missing"] == [], f"not registered by `import pretraining`: {out['missing']}"
    np.testing.assert_allclose(out["max_diff"], 0.0, atol=1e-6)
