import atexit
import os
import shutil
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Weights a user fetched must not make the tests' "missing file" sets available.
os.environ["CBAM_VIZ_WEIGHTS"] = tempfile.mkdtemp(prefix="cbam-viz-test-weights-")
# Training state of the tests' tiny runs never lands beside a real run's (~/.cache/cbam-viz/train).
os.environ["CBAM_VIZ_TRAIN_STATE"] = tempfile.mkdtemp(prefix="cbam-viz-test-train-")
for _folder in (os.environ["CBAM_VIZ_WEIGHTS"], os.environ["CBAM_VIZ_TRAIN_STATE"]):
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
