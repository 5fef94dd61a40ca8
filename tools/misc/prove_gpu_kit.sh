#!/usr/bin/env bash
# Prove the GPU kit's offline install on this CPU machine: a fresh venv that holds only what the GPU image holds,
# the kit installed with tools/misc/run_gpu_kit.sh (pip --no-index, nothing else), then the tiny Mask2Former RASS
# config through tools/train.py, --resume and tools/test.py, importing nothing from this checkout's rass_mmseg.
#
#   python tools/misc/build_gpu_kit.py && bash tools/misc/prove_gpu_kit.sh [KIT] [WORK]
#
# 1. python -m venv WORK/venv (no system site packages);
# 2. the image's part, from the package registry: torch and torchvision as on the GPU image (PROOF_TORCH 2.11.0,
#    PROOF_TORCHVISION 0.26.0; the project pins 2.14.1), then the image packages the run imports, at the image's
#    versions where the registry has them; whatever pip pulls in beyond tools/misc/gpu_image_packages.txt (the
#    image's list) is uninstalled again;
# 3. the kit: bash tools/misc/run_gpu_kit.sh --install-only --skip-image-check --target WORK/site;
# 4. the tiny config (configs/rass/rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py), 4 iterations, resumed to
#    6, tested, with PYTHONPATH=WORK/site alone, data and work dir under WORK.
# Each phase's wall time is printed; the whole proof takes a few minutes, most of it step 2.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=$(realpath "${1:-$repo/build/gpu_kit}")
work=$(realpath -m "${2:-$repo/build/gpu_kit_proof}")
py=${PYTHON:-python3}
cfg=configs/rass/rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py
phase() { printf '[proof] %-44s %5d s\n' "$1" $(($(date +%s) - t)); t=$(date +%s); }
t=$(date +%s)

rm -rf "$work/site" "$work/work" "$work/textures"
vpy=$work/venv/bin/python
mkdir -p "$work"
quiet_pip() {  # pip install into the venv, its output shown only when it fails
    "$vpy" -m pip install -q --disable-pip-version-check "$@" >"$work/pip.log" 2>&1 ||
        { grep -v "is ignored: it is neither" "$work/pip.log" | tail -n 20
          echo "[proof] pip install $* failed"; exit 1; }
}
if [ "${PROOF_REUSE_VENV:-0}" = 1 ] && [ -x "$vpy" ]; then
    echo "[proof] reusing $work/venv (PROOF_REUSE_VENV=1): not a fresh venv"
else
    rm -rf "$work/venv"
    "$py" -m venv "$work/venv"
    phase "fresh venv ($("$vpy" --version))"
    torch_pin=${PROOF_TORCH:-2.11.0}
    quiet_pip "torch==$torch_pin"
    image=(
        "torch==$torch_pin" "torchvision==${PROOF_TORCHVISION:-0.26.0}" numpy scipy matplotlib pyyaml rich regex tqdm
        six pillow packaging opencv-python-headless scikit-image transformers==5.18.0 tokenizers safetensors==0.8.0
        peft==0.21.0 huggingface-hub==1.33.0 torchmetrics==1.9.0 requests filelock
    )
    quiet_pip "${image[@]}"
    # what pip pulled in beyond the image (newer releases' dependencies, e.g. typer -> pydantic) is removed again
    extra=$("$vpy" -I - "$repo/tools/misc/gpu_image_packages.txt" <<'PY'
import re, sys
from importlib import metadata
norm = lambda name: re.sub(r'[-_.]+', '-', name).lower()
image = {norm(line.strip()) for line in open(sys.argv[1]) if line.strip() and not line.startswith('#')}
print(' '.join(sorted({norm(d.metadata['Name']) for d in metadata.distributions()} - image)))
PY
)
    if [ -n "$extra" ]; then
        "$vpy" -m pip uninstall -q -y $extra >/dev/null
        echo "[proof] removed from the venv, as the GPU image lacks them: $extra"
    fi
    phase "image stand-in: ${#image[@]} packages, torch: $torch_pin"
fi

bash "$repo/tools/misc/run_gpu_kit.sh" --kit "$kit" --target "$work/site" --python "$vpy" --install-only \
    --skip-image-check
phase "kit installed offline"

cd "$repo"
env -u PYTHONPATH PYTHONPATH="$work/site" "$vpy" -P -c "import rass_mmseg, mmcv; print('[proof] rass_mmseg from',
    rass_mmseg.__file__, '| mmcv', mmcv.__version__, 'from', mmcv.__file__)"
data=(train_dataloader.dataset.data_root="$work/textures" val_dataloader.dataset.data_root="$work/textures"
      test_dataloader.dataset.data_root="$work/textures" train_dataloader.num_workers=0
      train_dataloader.persistent_workers=False val_dataloader.num_workers=0 val_dataloader.persistent_workers=False
      test_dataloader.num_workers=0 test_dataloader.persistent_workers=False)
env -u PYTHONPATH PYTHONPATH="$work/site" PYTHONWARNINGS=ignore "$vpy" tools/train.py "$cfg" --work-dir "$work/work" \
    --cfg-options train_cfg.max_iters=4 train_cfg.val_interval=4 default_hooks.checkpoint.interval=2 \
    default_hooks.logger.interval=1 "${data[@]}" >"$work/train.log" 2>&1 ||
    { tail -n 30 "$work/train.log"; echo "[proof] tools/train.py failed (log: $work/train.log)"; exit 1; }
phase "tools/train.py, 4 iterations"
env -u PYTHONPATH PYTHONPATH="$work/site" PYTHONWARNINGS=ignore "$vpy" tools/train.py "$cfg" --work-dir "$work/work" \
    --resume --cfg-options train_cfg.max_iters=6 train_cfg.val_interval=6 default_hooks.checkpoint.interval=2 \
    default_hooks.logger.interval=1 "${data[@]}" >"$work/resume.log" 2>&1 ||
    { tail -n 30 "$work/resume.log"; echo "[proof] tools/train.py --resume failed (log: $work/resume.log)"; exit 1; }
grep -q "resumed" "$work/resume.log" || { echo "[proof] --resume did not resume (log: $work/resume.log)"; exit 1; }
phase "tools/train.py --resume, to 6 iterations"
env -u PYTHONPATH PYTHONPATH="$work/site" PYTHONWARNINGS=ignore "$vpy" tools/test.py "$cfg" "$work/work/iter_6.pth" \
    --work-dir "$work/work" --cfg-options "${data[@]}" >"$work/test.log" 2>&1 ||
    { tail -n 30 "$work/test.log"; echo "[proof] tools/test.py failed (log: $work/test.log)"; exit 1; }
phase "tools/test.py"
grep -h -E "Iter\(train\) \[ *[0-9]+/[0-9]+\]|resumed|mIoU:|Iter\(test\).*mIoU" "$work/train.log" "$work/resume.log" \
    "$work/test.log" | sed -e 's/^.* - mmengine - INFO - /  /' | cut -c1-160
grep -q "mIoU" "$work/test.log" || { echo "[proof] tools/test.py printed no mIoU"; exit 1; }
echo "[proof] ok: the kit installs offline and the tiny Mask2Former trains, resumes and tests (logs in $work)"
