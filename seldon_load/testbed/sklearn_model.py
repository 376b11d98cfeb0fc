"""A real (small) scikit-learn model for the testbed, served by MLServer's sklearn runtime.

Trained at set-up time on the iris data that ships with scikit-learn (nothing is downloaded)
and cached in the model folder, keyed by the scikit-learn version that pickled it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from seldon_load.errors import TargetError

MODEL_NAME = "iris"
INPUT_NAME = "input-0"
OUTPUT_NAME = "predict"
MODEL_FILE = "model.joblib"
STAMP_FILE = "trained-with.json"
SKLEARN_RUNTIME = "mlserver_sklearn.SKLearnModel"


def train_iris(model_path: Path) -> None:
    """Fit a LogisticRegression on iris and write it with joblib (needs only scikit-learn)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500)
    model.fit(features.astype("float32"), labels)
    joblib.dump(model, model_path)


def _stamp() -> dict[str, str]:
    import sklearn

    return {"sklearn": sklearn.__version__}


def write_iris_model(model_dir: Path) -> dict[str, Any]:
    """Write model.joblib (unless a fresh one is there) and model-settings.json; return them."""
    if importlib.util.find_spec("mlserver_sklearn") is None:
        raise TargetError(
            "the testbed's iris model needs mlserver-sklearn: pip install 'seldon-load[testbed]'"
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_dir / MODEL_FILE
    stamp_path = model_dir / STAMP_FILE
    stamp = _stamp()
    fresh = model_path.is_file() and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp
    if not fresh:
        train_iris(model_path)
        stamp_path.write_text(json.dumps(stamp))
    settings: dict[str, Any] = {
        "name": MODEL_NAME,
        "implementation": SKLEARN_RUNTIME,
        "platform": "sklearn",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "INT64", "shape": [-1, 1]}],
        "parameters": {"uri": f"./{MODEL_FILE}", "version": "v1"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return settings
