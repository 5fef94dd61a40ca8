#!/usr/bin/env bash
# The GPU figures of docs/en/advanced_guides/benchmarks.md, measured in one run on a CUDA machine where this repo and
# its Python packages are importable (random weights: no Stable Diffusion folder needed).
#
#   bash tools/misc/gpu_benchmarks.sh [OUT_DIR]        # logs land in OUT_DIR (default work_dirs/gpu_benchmarks)
#   STEPS="degradation scr_train_bf16" bash tools/misc/gpu_benchmarks.sh    # a subset of the steps below
#
# 1. the degradation engine (tools/analysis_tools/benchmark_degradation.py): batched vs per-image loop on the GPU, and the
#    batched engine on the host CPU in the same run, batch 1/8/16 at 512x512;
# 2. paper-size RASS (SD 2.1-base UNet + VAE encoder, SegformerHead so that no compiled mmcv op is needed):
#    inference fp32 and bf16 autocast, each against the deploy build (Seg LoRA merged), and whole training
#    iterations (batch 2, bf16 AMP as the config);
# 3. paper-size SCR training iterations (batch 2, bf16 AMP), the restorer stage's memory;
# 4. (STEPS=tiny_tools_amp) mmseg's train/test tools on the GPU with --amp: tiny RASS trains, resumes and
#    tests, tiny SCR trains (work dirs removed afterwards);
# 5. (STEPS="m2f_tools m2f_inference m2f_inference_bf16 m2f_vs_segformer m2f_compiled") the paper's Mask2Former
#    config at paper size with random SD weights: tools/train.py 20 iterations (its bf16 AmpOptimWrapper, images
#    degraded on the fly) on generated 512x512 textures, --resume to 30, tools/test.py with its slide_features
#    inference (random weights: each checkpoint holds the frozen SD weights too, 5.3 GB, so one is saved per run);
#    FPS and peak memory of Mask2Former vs the SegformerHead variant, fp32 and bf16, Seg LoRA merged
#    (deploy) or not, and the UNet compiled with CUDA graphs. Mask2Former's deformable attention runs mmcv's CUDA
#    kernel when mmcv was built with CUDA ops, else mmcv's PyTorch version (rass_mmseg/compat/ms_deform_attn.py);
#    each Mask2Former step prints the path that ran ("[MSDeformAttn: ...]"). m2f_vs_segformer_bf16 is the same
#    comparison under bf16 autocast.
# Time boxes: each step is cut at STEP_TIMEOUT seconds (default 240); when BENCH_DEADLINE (seconds since the epoch)
# is set, a step gets at most the time left before it, and no step starts with under 30 s left
# (tools/misc/run_gpu_kit.sh sets it from its --budget).
set -uo pipefail
out=${1:-work_dirs/gpu_benchmarks}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONPATH=${PWD}${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
"$python" - <<'PY' | tee -a "$out/gpu.txt"
import importlib
for name in ('torch', 'diffusers', 'peft', 'transformers', 'kornia', 'mmengine', 'mmcv', 'mmseg'):
    module = importlib.import_module(name)
    print(f'{name} {getattr(module, "__version__", "?")}', end='  ')
print()
PY

msda_default=$("$python" -c "from rass_mmseg.compat.ms_deform_attn import ext_has_cuda_kernels as cuda
print(\"mmcv's CUDA kernel\" if cuda() else \"mmcv's PyTorch fallback (no CUDA ops in mmcv)\")" 2>/dev/null ||
    echo "unknown (rass_mmseg.compat does not import)")
echo "MSDeformAttn on CUDA: $msda_default" | tee -a "$out/gpu.txt"

msda_path() {  # msda_path LOG: the deformable-attention path a Mask2Former run took, from its log
    if grep -q "pure-PyTorch multi_scale_deformable_attn_pytorch" "$1"; then
        echo "mmcv's PyTorch fallback"
    elif grep -q "running it in float32" "$1"; then
        echo "mmcv's CUDA kernel, bf16 input run in float32"
    else
        echo "$msda_default"
    fi
}

step() {  # step NAME ARGS...: run one benchmark, keep its whole log, print its table
    local name=$1 limit=${STEP_TIMEOUT:-240} left
    shift
    if [ -n "${BENCH_DEADLINE:-}" ]; then
        left=$((BENCH_DEADLINE - $(date +%s)))
        if ((left < 30)); then
            echo "!! $name skipped: the time box is spent (${left} s left)"
            return
        fi
        ((left < limit)) && limit=$left
    fi
    echo "== $name (at most ${limit} s): $*"
    local t0=$(date +%s)
    timeout "$limit" "$python" "$@" >"$out/$name.log" 2>&1
    local status=$?
    grep -v -i -E "warn|^\s*$|paramwise_options" "$out/$name.log" | tail -n 24
    case $name in m2f*) echo "[MSDeformAttn: $(msda_path "$out/$name.log")]" ;; esac
    echo "[$name: $(($(date +%s) - t0)) s]"
    [ $status -eq 0 ] || echo "!! $name failed with exit status $status (see $out/$name.log)"
}

bench=tools/analysis_tools/benchmark.py
bench_degradation=tools/analysis_tools/benchmark_degradation.py
rass=configs/rass/rass_sd21-base_segformer-head_8xb2-160k_ade20k-lq-512x512.py
m2f=configs/rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py
scr=configs/scr/scr_sd21-base_4xb4-100k_ade20k-512x512.py
deploy=(--compare $rass --compare-cfg-options model.backbone.deploy=True)
run_step() {
    case $1 in
    degradation) step degradation $bench_degradation --device cuda --cpu-baseline --no-mmagic \
        --batch-sizes 1 8 16 --repeats 5 ;;
    rass_inference_fp32) step $1 $bench $rass --without-weights --num-images 20 --rounds 3 --amp none \
        "${deploy[@]}" ;;
    rass_inference_bf16) step $1 $bench $rass --without-weights --num-images 20 --rounds 3 --amp bf16 \
        "${deploy[@]}" ;;
    rass_train_bf16) step $1 $bench $rass --without-weights --mode train --batch-size 2 --num-images 10 \
        --rounds 2 --amp bf16 ;;
    scr_train_bf16) step $1 $bench $scr --without-weights --mode train --batch-size 2 --num-images 10 \
        --rounds 2 --amp bf16 ;;
    tiny_tools_amp)  # mmseg's train/test tools on the GPU with --amp: degradation, hooks, checkpoint, resume
        local work=$out/tiny_work
        step tiny_train tools/train.py configs/rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-lq-128x128.py --amp \
            --work-dir "$work" --cfg-options train_cfg.max_iters=20 train_cfg.val_interval=20
        step tiny_resume tools/train.py configs/rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-lq-128x128.py --amp --resume \
            --work-dir "$work" --cfg-options train_cfg.max_iters=30 train_cfg.val_interval=30
        step tiny_test tools/test.py configs/rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-lq-128x128.py "$work/iter_30.pth" \
            --work-dir "$work"
        step scr_tiny_train tools/train.py configs/scr/scr_tiny-sd_1xb4-300it_textures-128x128.py --amp \
            --work-dir "$out/scr_work" --cfg-options train_cfg.max_iters=20 train_cfg.val_interval=20
        rm -rf "$work" "$out/scr_work" ;;
    m2f_tools)  # the paper config through mmseg's tools, random SD weights, generated 512x512 textures
        local work=$out/m2f_work cfg=$out/m2f_random_weights.py
        cat >"$cfg" <<CFG
_base_ = ['$PWD/$m2f']
model = dict(backbone=dict(pretrained=None, vae=_base_.sd21_base_vae, unet=_base_.sd21_base_unet,
                           text_encoder=_base_.sd21_base_text_encoder))
pipeline = [dict(type='LoadImageFromFileChecked'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
textures = dict(_delete_=True, type='TextureSegDataset', data_root='$out/textures512', pipeline=pipeline,
                generate_cfg=dict(seed=0, num_train=16, num_val=4, image_size=512))
train_dataloader = dict(batch_size=2, num_workers=2,
                        dataset=dict(textures, data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train')))
val_dataloader = dict(batch_size=1, num_workers=2,
                      dataset=dict(textures, data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val')))
test_dataloader = val_dataloader
CFG
        step m2f_train tools/train.py "$cfg" --work-dir "$work" --cfg-options train_cfg.max_iters=20 \
            train_cfg.val_interval=20 default_hooks.checkpoint.interval=20
        step m2f_resume tools/train.py "$cfg" --resume --work-dir "$work" --cfg-options train_cfg.max_iters=30 \
            train_cfg.val_interval=30 default_hooks.checkpoint.interval=20
        step m2f_test tools/test.py "$cfg" "$work/iter_30.pth" --work-dir "$work"
        [ -f "$work/iter_30.pth" ] && du -h "$work/iter_30.pth" | tee -a "$out/m2f_tools.log"
        rm -rf "$work" ;;
    m2f_inference) step $1 $bench $m2f --without-weights --num-images 20 --rounds 3 --amp none \
        --compare $m2f --compare-cfg-options model.backbone.deploy=True ;;
    m2f_inference_bf16) step $1 $bench $m2f --without-weights --num-images 20 --rounds 3 --amp bf16 \
        --compare $m2f --compare-cfg-options model.backbone.deploy=True ;;
    m2f_vs_segformer) step $1 $bench $m2f --without-weights --num-images 20 --rounds 3 --compare $rass ;;
    m2f_vs_segformer_bf16) step $1 $bench $m2f --without-weights --num-images 20 --rounds 3 --amp bf16 \
        --compare $rass ;;
    m2f_train_bf16) step $1 $bench $m2f --without-weights --mode train --batch-size 2 --num-images 10 \
        --rounds 2 --amp bf16 ;;
    m2f_compiled) step $1 $bench $m2f --without-weights --num-images 20 --rounds 3 --warmup 5 \
        --cfg-options model.backbone.deploy=True --compile reduce-overhead ;;
    *) echo "unknown step $1" ;;
    esac
}
for name in ${STEPS:-degradation rass_inference_fp32 rass_inference_bf16 rass_train_bf16 scr_train_bf16}; do
    run_step "$name"
done
