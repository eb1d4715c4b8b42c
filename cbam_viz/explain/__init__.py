"""One-pass CAM explanations and CBAM attention capture; what they cost.

Names load on first use (:mod:`cbam_viz.lazy`): the method names (:mod:`.methods`) need no torch."""
from ..lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["GRADIENT_FREE", "METHOD_NAMES"], "methods"),
    **dict.fromkeys(["METHODS", "Cancelled", "Explanation", "as_batch", "check_target_layer", "default_target_layer",
                     "explain", "explain_batch", "target_layers", "to_arrays"], "engine"),
    **dict.fromkeys(["forward_passes", "seconds_per_pass"], "cost"),
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
