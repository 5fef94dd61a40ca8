#!/usr/bin/env bash
# One-command setup of rass_mmseg and its pinned OpenMMLab / diffusers stack into the active Python.
#
#   bash tools/install.sh
#
# mmcv 2.1.0 with compiled ops is taken from ../shared/wheels (when that folder exists and its wheel
# loads against the installed torch), else built from the PyPI source with the C++ standard raised to
# C++20 (torch 2.14's headers need it; mmcv 2.1.0's setup.py asks for C++17). The build takes ~20 min
# on 2 cores. pip's wheel cache is bypassed for mmcv so a wheel built against another torch is never
# picked up.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python}
pip=("$py" -m pip install --disable-pip-version-check)
wheels=${RASS_MMCV_WHEELS:-$repo/../shared/wheels}

echo "[install] torch + torchvision"
"${pip[@]}" torch==2.14.1 torchvision==0.29.1

echo "[install] pinned python dependencies"
"${pip[@]}" -r "$repo/requirements/runtime.txt"

mmcv_ok() {
  # True when mmcv 2.1.0 is installed and its compiled ops load against this torch.
  "$py" - <<'PY' >/dev/null 2>&1
import mmcv, torch
from mmcv.ops import nms
assert mmcv.__version__ == '2.1.0', mmcv.__version__
boxes = torch.tensor([[0., 0., 1., 1.], [0., 0., 1., 1.]])
keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)[1]
assert keep.tolist() == [0]
PY
}

# mmcv itself is installed with --no-deps below (so pip never swaps it); these are its runtime dependencies.
"${pip[@]}" addict yapf Pillow pyyaml packaging
if mmcv_ok; then
  echo "[install] mmcv 2.1.0 with compiled ops already present"
else
  if compgen -G "$wheels/mmcv-2.1.0-*.whl" >/dev/null; then
    echo "[install] mmcv 2.1.0 from $wheels"
    "${pip[@]}" --no-cache-dir --force-reinstall --no-deps --no-index --find-links "$wheels" mmcv==2.1.0
  fi
  if ! mmcv_ok; then
    echo "[install] building mmcv 2.1.0 from source with compiled ops (about 20 min on 2 cores)"
    src=$(mktemp -d)
    "$py" -m pip download --disable-pip-version-check --no-cache-dir --no-deps --no-binary mmcv \
      --no-build-isolation -d "$src" mmcv==2.1.0
    tar -xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/mmcv-2.1.0/setup.py"
    (cd "$src/mmcv-2.1.0" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
      "${pip[@]}" --no-cache-dir --no-build-isolation --force-reinstall --no-deps .)
    rm -rf "$src"
    mmcv_ok || { echo "[install] mmcv 2.1.0 was built but its ops do not load" >&2; exit 1; }
  fi
fi

echo "[install] mmsegmentation, mmdet and rass_mmseg (editable)"
"${pip[@]}" mmsegmentation==1.2.2 mmdet==3.3.0
"${pip[@]}" -e "$repo"
"$py" -c "import rass_mmseg, mmseg, mmdet, mmcv; print('[install] ok: rass_mmseg', rass_mmseg.__version__, 'mmseg', mmseg.__version__, 'mmdet', mmdet.__version__, 'mmcv', mmcv.__version__)"
