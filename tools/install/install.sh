#!/usr/bin/env bash
# One-command setup of rass_mmseg and its pinned OpenMMLab / diffusers stack into the active Python.
#
#   bash tools/install/install.sh [--mmcv-wheels DIR]
#
# Options:
#   --mmcv-wheels DIR  a folder holding a prebuilt mmcv-2.1.0-*.whl with CPU ops (e.g. one a CI machine keeps);
#                      used when its ops load against the installed torch. Without it (and without the
#                      equivalent RASS_MMCV_WHEELS=DIR), mmcv is built from source. No default.
#   -h, --help         this text.
#
# mmcv 2.1.0 needs compiled ops built against the installed torch. Which ops depends on RASS_MMCV_CUDA:
#   auto (default)  CUDA ops when torch sees a GPU, CPU ops otherwise;
#   1               CUDA ops even without a visible GPU (cross-compile; set TORCH_CUDA_ARCH_LIST);
#   0               CPU ops only (the GPU is hidden from the build).
# CPU ops: taken from the --mmcv-wheels folder (when given and its wheel loads against the installed
# torch), else built from the PyPI source with the C++ standard raised to C++20 (torch 2.14's
# headers need it; mmcv 2.1.0's setup.py asks for C++14/17, for g++ and nvcc alike). ~20 min on 2 cores.
# CUDA ops: always built from source (a --mmcv-wheels wheel has CPU ops only) against torch's own CUDA
# release; tools/install/mmcv_cuda.py finds a matching toolkit (CUDA_HOME, /usr/local/cuda, nvcc on PATH) or
# pip-installs the one torch pins (cuda-toolkit[nvcc,cccl,crt]) and assembles a CUDA_HOME of symlinks
# in build/cuda-home. TORCH_CUDA_ARCH_LIST defaults to the visible GPUs' compute capabilities and
# MAX_JOBS to the number of cores; both can be set by the user. pip's wheel cache is bypassed for mmcv
# so a wheel built against another torch is never picked up.
# mmagic 1.2.0 (PSNR/SSIM oracle, NIQE, degradation baseline) is installed with --no-deps, its stale requirements
# left out: requirements/mmagic.txt lists what the modules we import need.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
py=${PYTHON:-python}
pip=("$py" -m pip install --disable-pip-version-check)
wheels=${RASS_MMCV_WHEELS:-}  # no default: only a folder the caller names is searched

while [[ $# -gt 0 ]]; do
  case $1 in
    --mmcv-wheels) [[ $# -ge 2 && -n $2 ]] || { echo "install.sh: --mmcv-wheels needs a folder" >&2; exit 2; }
                   wheels=$2; shift 2 ;;
    --mmcv-wheels=*) wheels=${1#*=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (expected --mmcv-wheels DIR or --help)" >&2; exit 2 ;;
  esac
done
if [[ -n $wheels && ! -d $wheels ]]; then
  echo "install.sh: --mmcv-wheels $wheels: no such folder" >&2
  exit 2
fi

echo "[install] torch + torchvision"
"${pip[@]}" torch==2.14.1 torchvision==0.29.1

echo "[install] pinned python dependencies"
"${pip[@]}" -r "$repo/requirements/runtime.txt"

helper=("$py" "$repo/tools/install/mmcv_cuda.py")
mmcv_mode=$("${helper[@]}" mode)  # cuda | cpu, from RASS_MMCV_CUDA and whether torch sees a GPU
check=(check)
[[ $mmcv_mode == cuda ]] && check+=(--cuda)
echo "[install] mmcv ops wanted: $mmcv_mode (RASS_MMCV_CUDA=${RASS_MMCV_CUDA:-auto})"

mmcv_ok() {
  # True when mmcv 2.1.0 is installed and its compiled ops run against this torch; in cuda mode also
  # that they carry CUDA ops of torch's CUDA release which run on the visible GPU (if any).
  "${helper[@]}" "${check[@]}" >/dev/null 2>&1
}

build_mmcv() {
  # Builds mmcv 2.1.0 from its PyPI source with compiled ops ($mmcv_mode) and installs it.
  local src jobs cuda_env rc=0 cuda_home
  jobs=${MAX_JOBS:-$(nproc)}
  if [[ $mmcv_mode == cuda ]]; then
    cuda_home=$("${helper[@]}" cuda-home --dest "$repo/build/cuda-home") || rc=$?
    if [[ $rc == 3 ]]; then  # no nvcc of torch's CUDA release here: take the toolkit torch pins
      echo "[install] CUDA compiler from pip: $("${helper[@]}" pip-spec)"
      "${pip[@]}" "$("${helper[@]}" pip-spec)"
      cuda_home=$("${helper[@]}" cuda-home --dest "$repo/build/cuda-home")
    elif [[ $rc != 0 ]]; then
      return "$rc"
    fi
    command -v ninja >/dev/null || "${pip[@]}" ninja  # without ninja the build runs one file at a time
    cuda_env=(FORCE_CUDA=1 "CUDA_HOME=$cuda_home" "TORCH_CUDA_ARCH_LIST=$("${helper[@]}" arch-list)")
    echo "[install] building mmcv 2.1.0 with CUDA ops: ${cuda_env[*]} MAX_JOBS=$jobs" \
      "(about 75 CPU-minutes for one arch, ~80 min on 2 cores, e.g. ~8 min on 16)"
  else
    cuda_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)  # mmcv's setup.py builds CUDA whenever it sees a GPU
    echo "[install] building mmcv 2.1.0 from source with compiled CPU ops (about 20 min on 2 cores)"
  fi
  src=$(mktemp -d)
  trap "rm -rf '$src'" EXIT  # also when the build fails or is interrupted
  "$py" -m pip download --disable-pip-version-check --no-cache-dir --no-deps --no-binary mmcv \
    --no-build-isolation -d "$src" mmcv==2.1.0
  tar -xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
  # C++20 for g++ ('cxx') and nvcc flags alike: setup.py spells both as -std=c++14 / -std=c++17.
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/mmcv-2.1.0/setup.py"
  (cd "$src/mmcv-2.1.0" && env "${cuda_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS="$jobs" \
    "${pip[@]}" --no-cache-dir --no-build-isolation --force-reinstall --no-deps .)
  rm -rf "$src"
  trap - EXIT
}

# mmcv itself is installed with --no-deps below (so pip never swaps it); these are its runtime dependencies.
"${pip[@]}" addict yapf Pillow pyyaml packaging
if mmcv_ok; then
  echo "[install] mmcv 2.1.0 with compiled $mmcv_mode ops already present"
else
  if [[ -z $wheels ]]; then
    echo "[install] no --mmcv-wheels folder given: mmcv 2.1.0 is built from source"
  elif [[ $mmcv_mode == cuda ]]; then
    echo "[install] CUDA ops wanted: the CPU-only wheels of $wheels are not used"
  elif compgen -G "$wheels/mmcv-2.1.0-*.whl" >/dev/null; then
    echo "[install] mmcv 2.1.0 from $wheels"
    "${pip[@]}" --no-cache-dir --force-reinstall --no-deps --no-index --find-links "$wheels" mmcv==2.1.0
  fi
  if ! mmcv_ok; then
    build_mmcv
    mmcv_ok || { "${helper[@]}" "${check[@]}" >&2 || true
                 echo "[install] mmcv 2.1.0 was built but its $mmcv_mode ops do not work" >&2; exit 1; }
  fi
fi

echo "[install] mmsegmentation, mmdet and rass_mmseg (editable)"
"${pip[@]}" mmsegmentation==1.2.2 mmdet==3.3.0
echo "[install] mmagic 1.2.0 without its stale requirements (requirements/mmagic.txt says why)"
"${pip[@]}" -r "$repo/requirements/mmagic.txt"
"${pip[@]}" --no-deps mmagic==1.2.0
"${pip[@]}" -e "$repo"
"$py" -c "import rass_mmseg, mmseg, mmdet, mmcv, mmagic; print('[install] ok: rass_mmseg', rass_mmseg.__version__, 'mmseg', mmseg.__version__, 'mmdet', mmdet.__version__, 'mmcv', mmcv.__version__, 'mmagic', mmagic.__version__)"
"$py" -c "import rass_mmseg; from mmagic.evaluation.metrics import niqe; from mmagic.datasets.transforms import RandomBlur" \
  || { echo "[install] mmagic 1.2.0 does not import with this stack (see rass_mmseg/compat/mmagic_imports.py)" >&2; exit 1; }
"${helper[@]}" "${check[@]}" --report | sed 's/^/[install] /'
