"""The Gradio user interface: one module per tab, wired together by the top-level app.py."""
