"""The CAM methods by name: what the command line checks before torch and pytorch-grad-cam load."""

# How each method is named in figures and menus; the keys are those of engine.METHODS.
METHOD_NAMES = {
    "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM", "layercam": "LayerCAM",
    "hirescam": "HiResCAM", "gradcamelementwise": "Grad-CAM element-wise", "eigengradcam": "Eigen-Grad-CAM",
    "eigencam": "EigenCAM", "scorecam": "Score-CAM",
}
# Methods that need no gradient: they skip the backward step entirely.
GRADIENT_FREE = {"eigencam", "scorecam"}
