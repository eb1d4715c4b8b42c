#!/usr/bin/env bash
# cbam-viz set-up and entry points. Installs whatever is missing, then:
#   bash run.sh app    launch the web app on the bundled demo models (http://127.0.0.1:7860)
#   bash run.sh test   run the whole test suite (browser and PostgreSQL tests included)
#   bash run.sh cli …  run `python -m cbam_viz …` inside the project environment
set -euo pipefail
cd "$(dirname "$0")"
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1
# glibc keeps freed large buffers otherwise (RSS grows ~100 MB per large upload); see cbam_viz/allocator.py
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-131072} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-131072}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

check_free_space() {  # a full disk fails pip half-way with a bare OSError: say so before starting
  local need_mb=1024  # an update beside an installed PyTorch
  compgen -G ".venv/lib/python*/site-packages/torch" >/dev/null || need_mb=7168  # PyTorch's build alone is ~5.5 GB
  need_mb=${CBAM_VIZ_INSTALL_NEEDS_MB:-$need_mb}
  local free_mb; free_mb=$(df -Pm .venv 2>/dev/null | awk 'NR == 2 {print $4}')
  if [ -n "$free_mb" ] && [ "$free_mb" -lt "$need_mb" ]; then  # no reading: let pip try
    echo "not enough disk space to install: about $need_mb MB needed on the disk holding $(pwd)/.venv, $free_mb MB free." >&2
    echo "Free some space and run this again (set CBAM_VIZ_INSTALL_NEEDS_MB=0 to try anyway)." >&2
    exit 1
  fi
}

ensure_venv() {  # $1: requirements file; requirements-test.txt includes requirements.txt
  if [ ! -x .venv/bin/python ] && ! "$PYTHON" -m venv .venv; then
    rm -rf .venv  # half made: the next run must not take it for a working one
    echo "could not create .venv with $PYTHON: install Python 3.11 and its venv module (Debian/Ubuntu: apt-get install python3.11-venv)" >&2
    exit 1
  fi
  local stamp=.venv/.installed-$(basename "$1")
  local want; want=$(cat requirements*.txt | sha256sum | cut -c1-16)
  local covering=("$stamp")  # stamps whose install covers $1: the test install covers the runtime one
  [ "$(basename "$1")" = requirements.txt ] && covering+=(.venv/.installed-requirements-test.txt)
  local s
  for s in "${covering[@]}"; do [ "$(cat "$s" 2>/dev/null)" = "$want" ] && return 0; done
  check_free_space
  echo "installing Python packages from $1 (first run, or changed requirements: a few minutes; needs pip's package index)..."
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$1" 2>&1 | grep -v "is ignored" || true
  if [ "$(basename "$1")" = requirements-test.txt ]; then  # packages whose declared dependencies would clash
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-test-nodeps.txt 2>&1 \
      | grep -v "is ignored" || true
  fi
  .venv/bin/python -c "import torch, torchvision, pytorch_grad_cam, gradio" || { echo "install failed" >&2; exit 1; }
  echo "$want" > "$stamp"
}

ensure_test_system_packages() {  # Chromium for browser tests, PostgreSQL for the study store tests
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

case "${1:-}" in
  app) ensure_venv requirements.txt; shift; exec .venv/bin/python app.py "$@" ;;
  test) ensure_test_system_packages; ensure_venv requirements-test.txt; shift
        exec .venv/bin/python -m pytest "$@" ;;
  cli) ensure_venv requirements.txt; shift; exec .venv/bin/python -m cbam_viz "$@" ;;
  *) echo "usage: bash run.sh app|test|cli [args]" >&2; exit 2 ;;
esac
