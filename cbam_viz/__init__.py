"""cbam-viz: see what CBAM attention changes inside a CNN."""
import os

# Never reach the network: no Gradio analytics, no Hugging Face telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
# How the README runs the command line (inside the project's environment): every printed hint starts so.
CLI = "bash run.sh cli"
