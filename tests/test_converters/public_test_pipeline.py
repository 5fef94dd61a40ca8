"""The public RASS code's test of one image, computed independently of our package from a ``MaskFormer_rass`` state
dict (detectron2 key names), for the end-to-end test of the converted release.

Followed step by step from github.com/Ka1Guan/RASS: detectron2's test mapper reads the image with PIL and resizes its
short side with ``PIL.Image.resize(BILINEAR)`` (``ResizeShortestEdge``); ``MaskFormer_rass.forward`` pads it with zeros
at the bottom and right to a multiple of 8 (``ImageList.from_tensors``); ``RASS.PairedSROnlineTxtDataset`` maps it to
[-1, 1] as both the conditioning and the "output" image; ``FeatureProjection.slide_forward`` slides square windows of
the short side, and ``single_forward`` prompts each with ``f'{RAM tags of the whole padded image}, {''}'`` (RAM:
``ram_transforms`` then ``generate_tag``, here :func:`public_ram_scores` on the public keys and :func:`public_ram_tags`;
``encode_prompt`` of ras.py: cleaned, one padded 77-token window); ``Generator_with_pretrain.forward`` takes the VAE
encoder's down blocks 1 and 3 and the UNet's up blocks at timestep 1 (the latent: the posterior's mode here, where the
public code samples it); ``forward_features`` resizes each feature to window // stride (nearest) and sums the
projections per stride; the windows' features are averaged; Mask2Former's semantic inference runs at the padded size,
its result is cropped to the image and resized to the original size (``sem_seg_postprocess``).

Weights are read by their detectron2 names; the Seg LoRA is merged by hand (W + alpha / rank * B A).
"""
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from torch import Tensor
from transformers import CLIPTextConfig, CLIPTextModel

from tests.test_converters import reference_forward as ref
from tests.test_converters import reference_ram_forward as ram_ref

SD = 'backbone.feature_extractor.sd.'
RAM = 'backbone.feature_extractor.ram.'
PROJ = 'backbone.feature_extractor.feature_projections.'


def detectron2_resize(path: str, short_edge: int, max_size: int) -> Tuple[Tensor, Tuple[int, int]]:
    """RGB image (3, h, w) in 0..255 after ``ResizeShortestEdge`` (PIL bilinear), and the original (H, W)."""
    image = Image.open(path).convert('RGB')
    width, height = image.size
    scale = short_edge / min(height, width)
    new_h, new_w = (short_edge, scale * width) if height < width else (scale * height, short_edge)
    if max(new_h, new_w) > max_size:
        new_h, new_w = new_h * max_size / max(new_h, new_w), new_w * max_size / max(new_h, new_w)
    resized = image.resize((int(new_w + 0.5), int(new_h + 0.5)), Image.BILINEAR)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float(), (height, width)


def padded_input(path: str, short_edge: int, max_size: int) -> Tuple[Tensor, Tuple[int, int], Tuple[int, int]]:
    """(the model input (1, 3, H, W) in [-1, 1]: resized, zero-padded at the bottom and right to a multiple of 8), the
    resized (h, w) and the original (H, W)."""
    image, original = detectron2_resize(path, short_edge, max_size)
    h, w = image.shape[-2:]
    padded = torch.zeros(3, h + (-h) % 8, w + (-w) % 8)
    padded[:, :h, :w] = image
    return (padded / 255.0 * 2 - 1)[None], (h, w), original


def public_ram_scores(batch: Tensor, state: Dict[str, Tensor], arch, prefix: str = RAM) -> Tensor:
    """RAM's sigmoid scores of images in [-1, 1]: ``ram_transforms(x * 0.5 + 0.5)`` (torchvision 0.16's
    ``Resize((size, size))`` on a tensor: bilinear, no antialiasing; ImageNet ``Normalize``), then ``RAMLora`` on the
    public keys under ``prefix`` (LoRA unmerged)."""
    x = T.Resize((arch.image_size, arch.image_size), antialias=False)(batch * 0.5 + 0.5)
    x = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(x)
    return ram_ref.scores(x, state, arch, prefix=prefix)


def public_ram_tags(scores: Tensor, tags: Sequence[str], thresholds: Sequence[float]) -> List[str]:
    """``generate_tag``: the tags whose score exceeds their threshold, in list order, joined by ``', '``."""
    kept = scores > torch.tensor(thresholds, dtype=scores.dtype)
    return [', '.join(tag for tag, keep in zip(tags, row) if keep) for row in kept.tolist()]


def public_clean_caption(caption: str) -> str:
    """The text ``encode_prompt`` of ras.py tokenizes."""
    return ' '.join(caption.strip('[] ,').replace("'", '').split(','))


def public_caption_embeddings(tokenizer, text_encoder, caption: str) -> Tensor:
    """``encode_prompt`` of ras.py."""
    ids = tokenizer(public_clean_caption(caption), max_length=tokenizer.model_max_length, padding='max_length',
                    truncation=True, return_tensors='pt').input_ids
    return text_encoder(ids)[0]


def sd_modules(state: Dict[str, Tensor], sd_arch: dict, rank: int, alpha: float = 8.0):
    """VAE, UNet (base weights + the three Seg LoRA adapters merged by hand) and text encoder from the state dict."""
    vae = AutoencoderKL(**sd_arch['vae'])
    vae.load_state_dict({k[len(SD + 'vae.'):]: v for k, v in state.items() if k.startswith(SD + 'vae.')})
    text_encoder = CLIPTextModel(CLIPTextConfig(**sd_arch['text_encoder']))
    text_encoder.load_state_dict({k[len(SD + 'text_encoder.'):]: v for k, v in state.items()
                                  if k.startswith(SD + 'text_encoder.')}, strict=False)  # position_ids buffer
    unet = UNet2DConditionModel(**sd_arch['unet'])
    prefix, merged = SD + 'unet.', {}
    for key, value in state.items():
        if key.startswith(prefix) and '.lora_' not in key:
            merged[key[len(prefix):].replace('.base_layer.', '.')] = value.clone()
    for key, a in state.items():
        if key.startswith(prefix) and '.lora_A.' in key:
            module = key[len(prefix):].split('.lora_A.')[0]
            b = state[key.replace('.lora_A.', '.lora_B.')]
            delta = b @ a if a.dim() == 2 else torch.einsum('or,rikl->oikl', b[:, :, 0, 0], a)
            merged[f'{module}.weight'] = merged[f'{module}.weight'] + alpha / rank * delta
    unet.load_state_dict(merged)
    return vae.eval(), unet.eval(), text_encoder.eval()


def sd_features(vae, unet, window: Tensor, conditioning: Tensor) -> List[Tensor]:
    """VAE encoder down blocks 1 and 3, then the four UNet up blocks, at timestep 1."""
    taps: List[Tensor] = []
    blocks = [vae.encoder.down_blocks[1], vae.encoder.down_blocks[3], *unet.up_blocks]
    handles = [b.register_forward_hook(lambda m, args, out: taps.append(out)) for b in blocks]
    try:
        latent = vae.encode(window).latent_dist.mode() * vae.config.scaling_factor
        unet(latent, torch.tensor([1]), encoder_hidden_states=conditioning)
    finally:
        for handle in handles:
            handle.remove()
    return taps


def project(features: Sequence[Tensor], state: Dict[str, Tensor], size: Tuple[int, int], feature_strides: Sequence[int],
            groups: int) -> Dict[str, Tensor]:
    """``forward_features``: nearest resize to size // stride, bottleneck projection, sum per stride (res2..res5)."""
    out: Dict[str, Tensor] = {}
    for index, (feature, stride) in enumerate(zip(features, feature_strides)):
        resized = F.interpolate(feature, size=(size[0] // stride, size[1] // stride))
        projected = ref.bottleneck(resized, state, f'{PROJ}{index}.0.', groups)
        name = f'res{int(math.log2(stride))}'
        out[name] = projected if name not in out else out[name] + projected
    return out


@torch.no_grad()
def public_test(path: str, state: Dict[str, Tensor], sd_arch: dict, tokenizer, tag, short_edge: int, groups: int,
                enc_heads: int, enc_points: int, enc_layers: int, dec_heads: int, dec_layers: int,
                feature_strides=(4, 8, 32, 16, 8, 8), max_size: int = 2048) -> Tuple[Tensor, str]:
    """(class scores (K, H, W) at the original size, the caption) of the image at ``path``; ``tag(images in [-1,
    1]) -> [tags]`` is the tagger (the public RAM: :func:`public_ram_tags` of :func:`public_ram_scores`)."""
    batch, (h, w), (height, width) = padded_input(path, short_edge, max_size)
    vae, unet, text_encoder = sd_modules(state, sd_arch, rank=state[next(k for k in state if '.lora_A.' in k)].shape[0])
    caption = f'{tag(batch)[0]}, '  # tags of the whole padded image, pos_prompt_vsd = ''
    conditioning = public_caption_embeddings(tokenizer, text_encoder, caption)
    H, W = batch.shape[-2:]
    crop = min(H, W)
    sums: Dict[str, Tensor] = {}
    counts: Dict[str, Tensor] = {}
    for h_index in range(max(H - crop + crop - 1, 0) // crop + 1):
        for w_index in range(max(W - crop + crop - 1, 0) // crop + 1):
            y2, x2 = min(h_index * crop + crop, H), min(w_index * crop + crop, W)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            window = batch[..., y1:y2, x1:x2]
            features = project(sd_features(vae, unet, window, conditioning), state, (crop, crop), feature_strides,
                               groups)
            for name, feature in features.items():
                stride = 2**int(name[3:])
                if name not in sums:
                    sums[name] = torch.zeros(1, feature.shape[1], H // stride, W // stride)
                    counts[name] = torch.zeros(1, 1, H // stride, W // stride)
                sums[name][..., y1 // stride:y2 // stride, x1 // stride:x2 // stride] += feature
                counts[name][..., y1 // stride:y2 // stride, x1 // stride:x2 // stride] += 1
    features = {name: sums[name] / counts[name] for name in sums}
    mask_features, multi_scale = ref.pixel_decoder(features, state, groups, enc_heads, enc_points, enc_layers)
    classes, masks = ref.predictor(multi_scale, mask_features, state, dec_heads, dec_layers)[-1]
    masks = F.interpolate(masks, size=(H, W), mode='bilinear', align_corners=False)
    scores = torch.einsum('qc,qhw->chw', classes[0].softmax(-1)[..., :-1], masks[0].sigmoid())
    scores = F.interpolate(scores[None, :, :h, :w], size=(height, width), mode='bilinear', align_corners=False)[0]
    return scores, caption
