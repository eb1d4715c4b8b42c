"""One-pass CAM explanations and CBAM attention capture."""
from .engine import (GRADIENT_FREE, METHOD_NAMES, METHODS, Explanation, as_batch, check_target_layer, default_target_layer,
                     explain, explain_batch, target_layers, to_arrays)

__all__ = ["GRADIENT_FREE", "METHOD_NAMES", "METHODS", "Explanation", "as_batch", "check_target_layer", "default_target_layer", "explain",
           "explain_batch", "target_layers", "to_arrays"]
