#!/usr/bin/env bash
# The GPU machine's side of the kit (tools/misc/build_gpu_kit.py): check the image, install the kit offline, run the
# prepared GPU steps (tools/misc/gpu_benchmarks.sh), most valuable first, each time-boxed, logs under OUT_DIR.
#
#   bash tools/misc/run_gpu_kit.sh [--kit DIR] [--out DIR] [--target DIR] [--work DIR] [--budget SECONDS]
#                                  [--install-only] [--skip-image-check] [--python PY]
#
# From the repository root on the GPU machine, with the kit carried in (device run: carry build/gpu_kit):
#   bash tools/misc/run_gpu_kit.sh --out $OUT
# 1. The image: Python, torch, a visible CUDA GPU and its name against the kit's expected_image.txt, and the image's
#    packages the run imports; the first difference stops the run in one line ("[kit] image differs: ..."), exit 3.
# 2. pip install --no-index --no-deps --target DIR (default /tmp/rass_gpu_kit) of the kit's requirements.txt from
#    its wheels/ (no network, nothing built), then the stand-in mmcv/_ext.py; exit 4 if that fails.
# 3. STEPS (default below) through tools/misc/gpu_benchmarks.sh with PYTHONPATH=DIR in --work (default /tmp/rass_gpu_run),
#    each step cut at STEP_TIMEOUT seconds and none started once --budget seconds (default 480) since this script
#    started have passed; --out (default $OUT) receives summary.txt and logs.tar.gz only.
# --install-only stops after 2, once the stack imports (tools/misc/prove_gpu_kit.sh uses it with --skip-image-check on
# a CPU machine).
set -uo pipefail
start=$(date +%s)
kit=build/gpu_kit out=${OUT:-work_dirs/gpu_kit_run} target=/tmp/rass_gpu_kit work=/tmp/rass_gpu_run budget=480
install_only=0 check_image=1 python=${PYTHON:-python3}
seconds_since() { local ms=$((($(date +%s%N) - $1) / 1000000)); printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)); }
while (($#)); do
    case $1 in
    --kit) kit=$2; shift ;;
    --out) out=$2; shift ;;
    --target) target=$2; shift ;;
    --work) work=$2; shift ;;
    --budget) budget=$2; shift ;;
    --python) python=$2; shift ;;
    --install-only) install_only=1 ;;
    --skip-image-check) check_image=0 ;;
    *) echo "[kit] unknown argument $1 (see the header of $0)"; exit 2 ;;
    esac
    shift
done
for file in requirements.txt expected_image.txt mmcv_ext_stub.py wheels; do
    [ -e "$kit/$file" ] ||
        { echo "[kit] $kit/$file missing: build the kit with python tools/misc/build_gpu_kit.py"; exit 2; }
done

if ((check_image)); then  # one line either way; exit 3 at the first difference
    "$python" - "$kit/expected_image.txt" <<'PY' || exit 3
import importlib.util, re, sys
want = dict(line.strip().split('=', 1) for line in open(sys.argv[1]) if '=' in line)
def stop(what):
    print(f'[kit] image differs: {what}; the kit was built for Python {want["python"]}, torch {want["torch"]}, '
          f'a {want["gpu"]} GPU (rebuild it: python tools/misc/build_gpu_kit.py --help)')
    sys.exit(3)
python = '.'.join(map(str, sys.version_info[:2]))
if python != want['python']:
    stop(f'Python {python}')
try:
    import torch
except ImportError:
    stop('no torch')
if torch.__version__.split('+')[0] != want['torch']:
    stop(f'torch {torch.__version__}')
if not torch.cuda.is_available():
    stop('no CUDA GPU visible to torch')
gpu = torch.cuda.get_device_name(0)
if not re.search(want['gpu'], gpu):
    stop(f'GPU {gpu!r}')
missing = [name for name in want['modules'].split() if importlib.util.find_spec(name) is None]
if missing:
    stop(f'missing image packages {" ".join(missing)}')
print(f'[kit] image ok: Python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), '
      f'{gpu}, {torch.cuda.device_count()} GPU(s)')
PY
fi

t0=$(date +%s%N)
mkdir -p "$target"
if ! "$python" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$target" --find-links "$kit/wheels" -r "$kit/requirements.txt" >"$target.pip.log" 2>&1; then
    grep -v "is ignored: it is neither" "$target.pip.log" | tail -n 20
    echo "[kit] pip install --no-index from $kit failed (log: $target.pip.log)"; exit 4
fi
cp "$kit/mmcv_ext_stub.py" "$target/mmcv/_ext.py" || { echo "[kit] no mmcv installed in $target"; exit 4; }
echo "[kit] installed $(grep -c . "$kit/requirements.txt") packages into $target in $(seconds_since "$t0") s"
export PYTHONPATH=$target${PYTHONPATH:+:$PYTHONPATH}
if ((install_only)); then  # on the GPU the first step imports all this anyway: the check would cost device time
    t0=$(date +%s%N)
    stack="mmengine, mmcv.ops, mmseg.models, mmdet.models, diffusers, kornia, rass_mmseg"
    PYTHONWARNINGS=ignore "$python" -P -c "import $stack" ||
        { echo "[kit] the installed kit does not import (see above)"; exit 4; }
    echo "[kit] the stack imports ($stack): $(seconds_since "$t0") s"
    exit 0
fi

# The run, most valuable first (see tools/misc/gpu_benchmarks.sh for each step), in a work folder; OUT_DIR gets two files:
# summary.txt (this output) and logs.tar.gz (every step's log, no data or checkpoints).
export STEPS=${STEPS:-"m2f_tools m2f_vs_segformer m2f_vs_segformer_bf16 m2f_inference m2f_inference_bf16 \
m2f_train_bf16 m2f_compiled"}
export BENCH_DEADLINE=$((start + budget)) PYTHON=$python
mkdir -p "$out" "$work"
bash tools/misc/gpu_benchmarks.sh "$work" 2>&1 | tee "$out/summary.txt"
tar -czf "$out/logs.tar.gz" -C "$work" --exclude=textures512 --exclude='*_work' .
echo "[kit] done in $(($(date +%s) - start)) s: $out/summary.txt, $out/logs.tar.gz" | tee -a "$out/summary.txt"
