# cbam-viz web app. CPU by default:
#   docker build -t cbam-viz .
#   docker run --rm -p 7860:7860 cbam-viz
# NVIDIA GPU (the NVIDIA Container Toolkit on the host, a driver for CUDA 13):
#   docker build --build-arg BASE=nvidia/cuda:13.0.2-base-ubuntu24.04 -t cbam-viz:gpu .
#   docker run --rm --gpus all -p 7860:7860 cbam-viz:gpu
# The torch wheel pinned in requirements.txt (CUDA 13.0 build) carries its own CUDA and cuDNN libraries
# and also runs on CPU; the CUDA base image adds the container-side driver set-up.
# ImageNet weights (never downloaded): mount them and name them, e.g.
#   docker run --rm -p 7860:7860 -v $PWD/weights:/weights:ro -e CBAM_VIZ_RESNET50=/weights/resnet50-0676ba61.pth \
#     -e CBAM_VIZ_RESNET50_CBAM=/weights/RESNET50_CBAM_new_name_wrap.pth cbam-viz
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072

# CUDA base images come without Python (Ubuntu 24.04's python3 is 3.12, which the project supports).
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN useradd --create-home --uid 10001 cbamviz
COPY --chown=cbamviz:cbamviz . .
RUN mkdir -p /app/data && chown cbamviz:cbamviz /app/data
USER cbamviz

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)" || exit 1
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
