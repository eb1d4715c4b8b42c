"""Objective localization benchmark of every model of a set on annotated images.

For each model and CAM method, with the annotated class (and, separately, each model's own top-1
class) as target: pointing game, AUC and rank hit (which depend only on the order of a map's values),
energy-based pointing game, raw and after matching the maps' concentration, concentration itself, IoU
of the thresholded CAM with the object mask and grad-cam's ROAD score (:mod:`.scoring`); top-1
accuracy once per model. Every CAM is scored under both placements of the
feature-resolution map on the image (:func:`cbam_viz.data.place_cam`), and model-free maps (uniform,
centre) are scored with the same functions as a chance level. Every model is compared with the
set's baseline with paired tests and Holm correction (:mod:`.summary`).
"""
from .run import EVAL_SEED, evaluate, evaluate_folder, ordered_roles, seen_seeds
from .summary import (ALPHA, ANALYSES, BINARY, LABELS, MEANINGS, METRICS, NO_VERDICT, PRIMARY, Evaluation, Score,
                      combine_placements, decide, markdown_table, summary_rows, surviving, write_outputs)

__all__ = ["ALPHA", "ANALYSES", "BINARY", "EVAL_SEED", "LABELS", "MEANINGS", "METRICS", "NO_VERDICT", "PRIMARY", "Evaluation",
           "Score", "combine_placements",
           "decide", "evaluate", "evaluate_folder", "markdown_table", "ordered_roles", "seen_seeds", "summary_rows", "surviving",
           "write_outputs"]
