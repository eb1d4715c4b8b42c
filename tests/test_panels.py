"""The Compare tab's numpy panels, without Gradio."""
from __future__ import annotations

import numpy as np

from cbam_viz.explain import Explanation
from cbam_viz.render import panels

BLOCKS = ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer2.2", "layer3.0", "layer4.0"]


def result(raw_max: float, probs: list[float]) -> Explanation:
    raw = np.linspace(0, raw_max, 16, dtype=np.float32).reshape(4, 4)
    return Explanation(cam=np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64), raw_cam=raw,
                       probs=np.array(probs), target=int(np.argmax(probs)), method="gradcam", target_layer="layer4.0")


def test_stages_group_blocks_in_network_order() -> None:
    assert panels.stages(BLOCKS) == {"layer1": [0, 1], "layer2": [2, 3, 4], "layer3": [5], "layer4": [6]}


def test_attention_grid_groups_stages_and_draws_the_mask() -> None:
    image = np.full((64, 64, 3), 128, np.uint8)
    maps = [np.random.default_rng(i).random((8, 8)).astype(np.float32) for i in range(len(BLOCKS))]
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    grid = panels.attention_grid(image, BLOCKS, maps, tile=64)
    outlined = panels.attention_grid(image, BLOCKS, maps, mask, tile=64)
    assert grid.dtype == np.uint8 and 2 * 64 < grid.shape[0] < 3 * 64 + 100 and grid.shape[1] > 6 * 64  # 2 stages per row
    one_per_row = panels.attention_grid(image, BLOCKS, maps, tile=64, max_cols=5)
    assert one_per_row.shape[0] > 4 * 64 and 3 * 64 < one_per_row.shape[1] < 4 * 64 + 100
    assert (outlined == 255).all(axis=2).sum() > (grid == 255).all(axis=2).sum()  # white outlines added
    assert not np.array_equal(grid, panels.attention_grid(image, BLOCKS, maps, shared=False, tile=64))


def test_channel_heatmap_sorts_channels_and_lines_up_blocks() -> None:
    channel = [np.linspace(0, 1, 16), np.linspace(1, 0, 64)]
    heat = panels.channel_heatmap(["layer1.0", "layer2.0"], channel, width=128)
    assert heat.dtype == np.uint8 and heat.shape[1] > 128
    top, left = panels.FONT_SIZE + 8, 124  # under the heading, right of the block names
    rows = [heat[top + 2, left:left + 128], heat[top + 14 + 3 + 2, left:left + 128]]
    np.testing.assert_array_equal(rows[0], rows[1])  # both sorted high -> low on the same 0..1 scale


def test_shared_scale_keeps_the_difference_in_strength() -> None:
    weak, strong = result(1.0, [0.9, 0.1]), result(4.0, [0.2, 0.8])
    scale = panels.shared_scale({"baseline": weak, "cbam": strong})
    assert scale == 4.0
    image = np.zeros((64, 64, 3), np.uint8)
    shared = [panels.cam_view(image, r, scale) for r in (weak, strong)]
    normalized = [panels.cam_view(image, r) for r in (weak, strong)]
    assert np.array_equal(normalized[0], normalized[1]) and not np.array_equal(shared[0], shared[1])


def test_text_panels() -> None:
    names = ["cat", "crane", "dog", "crane"]
    assert panels.unique_names(names) == ["cat", "crane (1)", "dog", "crane (3)"]
    a, b = result(1.0, [0.1, 0.6, 0.2, 0.1]), result(1.0, [0.1, 0.2, 0.6, 0.1])
    titles = {"baseline": "Baseline", "cbam": "CBAM"}
    text = panels.agreement({"baseline": a, "cbam": b}, panels.unique_names(names), titles, truth=2)
    assert "disagree" in text and "correct: CBAM" in text
    table = panels.top_k_table({"baseline": a, "cbam": b}, panels.unique_names(names), titles, k=2)
    assert table.splitlines() == ["| top-2 | Baseline | CBAM |", "|---|---|---|",
                                  "| 1 | crane (1) (60.0%) | dog (60.0%) |", "| 2 | dog (20.0%) | crane (1) (20.0%) |"]
    channels = panels.top_channels_table({"SE": np.array([0.1, 0.9, 0.5]), "CBAM": np.array([0.7, 0.2, 0.3])},
                                         "layer4.0", k=2)
    assert channels.splitlines()[2:] == ["| 1 | channel 1: 0.900 | channel 0: 0.700 |",
                                         "| 2 | channel 2: 0.500 | channel 2: 0.300 |"]
    assert "No model of this set" in panels.top_channels_table({}, None)
    piped = panels.top_k_table({"baseline": a}, ["c|a", "b", "d", "e"], {"baseline": "Base|line"}, k=1)
    assert piped.splitlines()[0] == "| top-1 | Base\\|line |" and "b (60.0%)" in piped  # "|" cannot split a cell
    three = {"baseline": a, "se": a, "cbam": a}
    assert "all agree" in panels.agreement(three, names, {k: k for k in three})
    warned = panels.agreement({"baseline": a, "cbam": a}, names, titles, out_of_domain="**Outside.**")
    assert warned.startswith("**Outside.**") and "agree" not in warned
    stacked = panels.titled([("one", np.zeros((10, 30, 3), np.uint8)), ("two", np.zeros((5, 50, 3), np.uint8))])
    assert stacked.shape == (panels.TOP + panels.STRIP + 10 + panels.STRIP + 5, 50, 3) and panels.titled([]) is None
    assert (stacked[:panels.TOP] == 255).all()  # left free for the label Gradio draws over the image
    assert (stacked[panels.TOP:panels.TOP + panels.STRIP] < 128).any()  # the first title, below that label
    assert (stacked[panels.TOP + panels.STRIP + 10 + 2] == panels.RULE).all()  # a rule above the second model
    mask = np.zeros((64, 64), bool)
    mask[40:, 40:] = True  # where the test CAM is highest
    table = panels.localization({"baseline": a, "cbam": b}, titles, mask, panels.unique_names(names), truth=1)
    assert "| Baseline | hit | 0.87 | 0.38 |" in table  # a explains class 1, the ground truth: scored (values by hand: 0.869, 0.375)
    assert "| CBAM | explains dog: not scored |" in table  # b explains its own prediction, dog: not scored
    assert panels.cam_caption("CBAM", b, names) == "CBAM · explains dog (60.0%)"
    assert "shared by both models" in panels.legend(True, 2.0) and "own range" in panels.legend(False)
    assert "shared by all 3 models" in panels.legend(True, 2.0, models=3) and "both" not in panels.legend(True, 2.0, 3)
    assert "SE or CBAM channel gate" in panels.legend(False)


def test_slider_halves_name_their_models() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    left, right = panels.labelled(image, "Baseline", "left"), panels.labelled(image, "CBAM", "right")
    assert (left[-5:, :4] == 255).all() and (left[-5:, -4:] == 0).all()  # a white box in the bottom-left corner
    assert (right[-5:, -4:] == 255).all() and (right[-5:, :4] == 0).all()
    assert (left[:70] == 0).all() and (left[-20:, :100] < 128).any()  # the rest untouched; ink in the box


def test_the_tab_scores_the_pointing_game_with_the_benchmarks_tolerance() -> None:
    """64 px image, 4x4 map: the tolerance is half a cell (8 px), as `evaluate` uses, not 15 px at 224 (4.3 px)."""
    from cbam_viz.data import pointing_game

    cam = np.zeros((64, 64), np.float32)
    cam[20, 20] = 1.0
    r = Explanation(cam=cam, raw_cam=np.zeros((4, 4), np.float32), probs=np.array([1.0]), target=0,
                    method="gradcam", target_layer="layer4.0")
    mask = np.zeros((64, 64), bool)
    mask[26:, 20:] = True  # 6 px below the peak: within 8 px, not within 4.3 px
    assert not pointing_game(cam, mask)  # the old, too small tolerance
    assert "| Baseline | hit |" in panels.localization({"baseline": r}, {"baseline": "Baseline"}, mask, ["circle"], 0)
