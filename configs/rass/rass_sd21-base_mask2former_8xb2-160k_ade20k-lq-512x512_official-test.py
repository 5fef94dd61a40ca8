# The authors' released model tested as their public code tests it, on ADE20K-LQ: the paper config
# (./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py: PIL short-edge resize to 512, black padding to a
# multiple of 8, windows of the short side, the VAE latent sampled) with the public code's test prompt: every window
# prompted with the RAM tags of the whole padded image, f'{tags}, ' (pos_prompt_vsd = ''), instead of the class names.
# Needs what tools/model_converters/convert_official_rass.py writes from rass.pth and SD 2.1-base into
# checkpoints/rass_official/ (the checkpoint, rass_sd21-base-scr/ with rass.pth's UNet, ram.safetensors) and the RAM
# tag files of the authors' repository (restoration_adaptation/ram/data/ram_tag_list.txt and
# ram_tag_list_threshold.txt) copied there. Test only: training refuses image-tag prompts.
#   python tools/test.py configs/rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512_official-test.py \
#       checkpoints/rass_official/rass.pth
# Options (docs/en/advanced_guides/fidelity.md): the DAPE tagger (the public code computes DAPE tags per window but
# discards them) with model.backbone.prompt_source.tagger.weights=checkpoints/rass_official/dape.safetensors; each
# window's own tags with model.backbone.prompt_source.scope=window.
_base_ = ['./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py']
official_dir = 'checkpoints/rass_official'
ram_tagger = dict(
    type='RAMTagger',
    image_size=384,  # Swin-L and the tagging head at RAM's sizes (RAMTagger's defaults)
    tag_list=f'{official_dir}/ram_tag_list.txt',
    thresholds=f'{official_dir}/ram_tag_list_threshold.txt',
    weights=f'{official_dir}/ram.safetensors')  # its own file: left out of checkpoints
model = dict(
    backbone=dict(
        pretrained=f'{official_dir}/rass_sd21-base-scr',  # SD 2.1-base with rass.pth's UNet (SCR LoRA merged)
        merge_adapters=[],
        prompt_source=dict(_delete_=True, type='ImageTagsPrompt', tagger=ram_tagger, suffix='', scope='image')))
