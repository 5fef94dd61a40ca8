#!/usr/bin/env bash
# The paper config's GPU path (tools/misc/gpu_benchmarks.sh, step m2f_tools) on a CPU, at paper size, through our tools:
# configs/rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py (SD 2.1-base UNet + VAE encoder + OpenCLIP-H
# text encoder, projection, Mask2Former, slide_features test) with random SD weights, on generated 512x512 textures
# degraded on the fly: tools/train.py 2 iterations at batch 1, --resume to 3, tools/test.py on one image.
# A benchmark, not a test: minutes on an idle machine and about 10 GB of memory. Each phase's wall time, CPU time
# and peak resident memory come from /usr/bin/time -v; docs/en/advanced_guides/benchmarks.md quotes the table.
#
#   bash tools/analysis_tools/cpu_paper_size_run.sh [WORK_DIR]      # default work_dirs/cpu_paper_size
#
# What differs from the GPU run: mmengine's AmpOptimWrapper needs a GPU, so training is fp32 (a plain OptimWrapper
# with the config's optimizer, clipping and parameter groups); batch 1 instead of 2; no dataloader workers.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(realpath -m "${1:-$repo/work_dirs/cpu_paper_size}")
python=${PYTHON:-python3}
m2f=configs/rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py
cd "$repo"
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
rm -rf "$work/run" "$work/textures512"
mkdir -p "$work"
cfg=$work/m2f_cpu_random_weights.py
cat >"$cfg" <<CFG
_base_ = ['$repo/$m2f']
model = dict(backbone=dict(pretrained=None, vae=_base_.sd21_base_vae, unet=_base_.sd21_base_unet,
                           text_encoder=_base_.sd21_base_text_encoder))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=_base_.optim_wrapper.optimizer,
                     clip_grad=_base_.optim_wrapper.clip_grad, constructor=_base_.optim_wrapper.constructor,
                     paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)
pipeline = [dict(type='LoadImageFromFileChecked'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
textures = dict(_delete_=True, type='TextureSegDataset', data_root='$work/textures512', pipeline=pipeline,
                generate_cfg=dict(seed=0, num_train=2, num_val=1, image_size=512))
train_split = dict(img_path='img_dir/train', seg_map_path='ann_dir/train')
val_split = dict(img_path='img_dir/val', seg_map_path='ann_dir/val')
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        dataset=dict(textures, data_prefix=train_split))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(textures, data_prefix=val_split))
test_dataloader = val_dataloader
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
CFG

declare -a rows
phase() {  # phase NAME ARGS...: run one tool under /usr/bin/time -v, keep its log, add a row to the table
    local name=$1 status wall cpu rss
    shift
    echo "== $name: $*"
    /usr/bin/time -v -o "$work/$name.time" "$python" "$@" >"$work/$name.log" 2>&1
    status=$?
    wall=$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/$name.time")
    cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {t += $2} END {printf "%d s", t}' "$work/$name.time")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f GiB", $2 / 1048576}' "$work/$name.time")
    grep -h -E "Iter\(train\)|Iter\(val\)|resumed|mIoU|Error|error:" "$work/$name.log" |
        sed -e 's/^.* - mmengine - INFO - /  /' | grep -v -i warn | cut -c1-200 | tail -n 8
    local verdict=ok
    [ $status -eq 0 ] || verdict="failed ($status), see $work/$name.log"
    rows+=("| $name | $wall | $cpu | $rss | $verdict |")
    return $status
}
ok=1
phase train tools/train.py "$cfg" --work-dir "$work/run" \
    --cfg-options train_cfg.max_iters=2 train_cfg.val_interval=100 || ok=0
((ok)) && { phase resume tools/train.py "$cfg" --resume --work-dir "$work/run" \
    --cfg-options train_cfg.max_iters=3 train_cfg.val_interval=100 || ok=0; }
((ok)) && { phase test tools/test.py "$cfg" "$work/run/iter_3.pth" --work-dir "$work/run" || ok=0; }

echo
echo "CPU paper-size run, $(date -u +%Y-%m-%d), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$("$python" -c 'import torch; print("torch", torch.__version__, torch.get_num_threads(), "threads")')"
echo "| phase | wall (h:mm:ss or m:ss) | CPU time (user + system) | peak RSS | status |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ -f "$work/run/iter_3.pth" ]; then  # random weights: the frozen SD weights are saved too, 5 GB a checkpoint
    echo "checkpoint iter_3.pth: $(du -h "$work/run/iter_3.pth" | cut -f1) (the checkpoints are removed now)"
fi
rm -f "$work"/run/iter_*.pth
((ok)) || exit 1
