"""What both Stable Diffusion backbones of RASS share: the frozen SD parts, LoRA, input padding, latents, prompts.

:class:`~rass_mmseg.models.backbones.RASSBackbone` (stage 2, segmentation features) and
:class:`~rass_mmseg.models.backbones.SCRBackbone` (stage 1, one-step restoration) are siblings built on this base.
It builds the VAE encoder, UNet, CLIP text encoder and tokenizer (from a local diffusers folder or from config dicts),
merges finished adapters into the UNet (:mod:`~rass_mmseg.models.adapters`), adds one fresh trainable LoRA (+
``conv_in``), owns the prompt (a prompt source from ``TASK_UTILS`` and a cached
:class:`~rass_mmseg.models.prompts.PromptEncoder`), and turns an input batch into scaled VAE latents. Subclasses
implement ``forward``.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import TASK_UTILS
from torch import Tensor

from ..adapters.lora_adapters import (
    DEFAULT_LORA_TARGETS,
    add_lora_adapter,
    lora_parameter_names,
    merge_injected_adapter,
    merge_lora_adapter,
    save_lora_adapter,
)
from ..prompts.prompt_encoder import PromptEncoder
from ..prompts.text_encoding import PromptEncoding
from ..utils.frozen_weights import leave_frozen_weights_out_of_checkpoints, persistent_state
from ..utils.sd_components import build_sd_components

__all__ = ['LATENT_MODES', 'StableDiffusionBackbone']

LATENT_MODES = ('mode', 'sample', 'sample_in_training')


def _clear_prompt_cache(module: 'StableDiffusionBackbone', incompatible_keys) -> None:
    """Load hook: the text encoder's weights may have changed."""
    module.prompt_encoder.clear()


class StableDiffusionBackbone(BaseModule):
    """Frozen Stable Diffusion VAE encoder + UNet with one trainable LoRA, conditioned on a cached text prompt.

    Args:
        pretrained: Local diffusers Stable Diffusion folder (vae/, unet/, text_encoder/, tokenizer/).
        vae: ``diffusers.AutoencoderKL`` keyword arguments, for random initialisation without ``pretrained``.
        unet: ``diffusers.UNet2DConditionModel`` keyword arguments, likewise.
        text_encoder: ``transformers.CLIPTextConfig`` keyword arguments, likewise.
        tokenizer: Options of the offline byte-level CLIP tokenizer used without ``pretrained``.
        prompt_source: A prompt source config (``TASK_UTILS``: ``FixedTextPrompt``, ``ClassNamesPrompt``); its
            phrases are encoded once and condition every image.
        timestep: UNet timestep of the single forward pass.
        latent_mode: Which latent of the VAE posterior: ``'mode'`` (its mean, deterministic), ``'sample'`` (a sample,
            in training and at test, as the public RASS code does) or ``'sample_in_training'`` (a sample while
            training, the mean in eval).
        lora_rank: Rank of the trainable LoRA.
        lora_alpha: LoRA scaling numerator (the LoRA output is scaled by ``lora_alpha / lora_rank``); peft's default
            8, which the public RASS code keeps (scale 2 at rank 4).
        lora_targets: Module-name suffixes that get LoRA (peft ``target_modules``).
        merge_adapters: Adapter folders (an SCR LoRA) written by ``export_adapter``, or plain peft adapter folders;
            merged into the UNet before the trainable LoRA is added.
        train_conv_in: Also train the UNet's ``conv_in``.
        gradient_checkpointing: Recompute UNet activations in the backward pass to save memory.
        attention: ``'sdpa'`` (PyTorch scaled_dot_product_attention) or ``'eager'`` (plain matmul + softmax).
        input_normalization: ``dict(mean=[...], std=[...])`` on the 0-255 scale: the normalisation of the data
            preprocessor feeding this backbone, undone and replaced by the VAE's [-1, 1] range (for mmseg configs
            whose preprocessor normalises with ImageNet statistics). None: inputs are already in [-1, 1].
        deploy: Build the UNet without LoRA layers, to load a checkpoint whose LoRA was merged
            (``tools/model_converters/merge_lora.py``).
        compile: Run the UNet through ``torch.compile`` with these keyword arguments (e.g. ``dict(mode='default')``;
            ``mode='reduce-overhead'`` uses CUDA graphs on a GPU; ``dict()`` for torch's defaults); None: eager.
            Compilation happens at the first forward; if it fails (no compiler, an unsupported op or backend) the
            UNet runs eagerly from then on and the reason is logged once. The state dict is unchanged.
        save_frozen_weights: Whether ``state_dict()`` (and so every checkpoint) holds the frozen VAE, text encoder
            and UNet base weights. None: only without ``pretrained``, where they are random and cannot be rebuilt;
            with ``pretrained`` a checkpoint holds the trained weights and a fingerprint of the frozen ones, checked
            on load (:mod:`~rass_mmseg.models.utils.frozen_weights`). Full checkpoints load either way.
        init_cfg: mmengine init config; keep None so pretrained SD weights are not re-initialised.
    """

    #: Name of the trainable LoRA adapter.
    adapter_name = 'lora'

    def __init__(self,
                 pretrained: Optional[str] = None,
                 vae: Optional[dict] = None,
                 unet: Optional[dict] = None,
                 text_encoder: Optional[dict] = None,
                 tokenizer: Optional[dict] = None,
                 prompt_source: dict = dict(type='FixedTextPrompt', text=''),
                 timestep: int = 1,
                 latent_mode: str = 'mode',
                 lora_rank: int = 4,
                 lora_alpha: float = 8.0,
                 lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
                 merge_adapters: Sequence[str] = (),
                 train_conv_in: bool = True,
                 gradient_checkpointing: bool = False,
                 attention: str = 'sdpa',
                 input_normalization: Optional[dict] = None,
                 deploy: bool = False,
                 save_frozen_weights: Optional[bool] = None,
                 compile: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        if latent_mode not in LATENT_MODES:
            raise ValueError(f'{name} latent_mode must be one of {LATENT_MODES}, got {latent_mode!r}')
        if attention not in ('sdpa', 'eager'):
            raise ValueError(f"{name} attention must be 'sdpa' or 'eager', got {attention!r}")
        self.vae, self.unet, self.text_encoder, self.tokenizer = build_sd_components(
            pretrained, vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer)
        self.vae.decoder = None  # the SCR head owns its own decoder; RASS never decodes
        self.vae.post_quant_conv = None
        self.pretrained, self.merge_adapters = pretrained, list(merge_adapters)
        self.timestep = timestep
        self.latent_mode = latent_mode
        self._set_input_normalization(input_normalization)
        self.unet.set_attn_processor(AttnProcessor2_0() if attention == 'sdpa' else AttnProcessor())

        self.requires_grad_(False)
        for index, path in enumerate(merge_adapters):
            self.unet = merge_lora_adapter(self.unet, path, name=f'merged{index}')
        self.deploy = deploy
        if not deploy:
            add_lora_adapter(self.unet, self.adapter_name, lora_rank, lora_alpha, lora_targets)
        trained_lora = set(lora_parameter_names(self.unet, self.adapter_name))
        for param_name, param in self.unet.named_parameters():
            param.requires_grad = param_name in trained_lora
        self.train_conv_in = train_conv_in and not deploy
        if self.train_conv_in:
            conv_in = self.unet.conv_in
            (conv_in.get_base_layer() if hasattr(conv_in, 'get_base_layer') else conv_in).requires_grad_(True)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()

        self.prompt_source = TASK_UTILS.build(prompt_source)
        self.prompt_encoder = PromptEncoder(self.tokenizer, self.text_encoder)
        self.register_load_state_dict_post_hook(_clear_prompt_cache)
        self.compile_cfg = None if compile is None else dict(compile)
        if self.compile_cfg is not None:
            self.unet.compile(**self.compile_cfg)  # in place: the module and its state-dict keys stay the same
        self.save_frozen_weights = pretrained is None if save_frozen_weights is None else save_frozen_weights
        if not self.save_frozen_weights:
            leave_frozen_weights_out_of_checkpoints(self)

    def _set_input_normalization(self, normalization: Optional[dict]) -> None:
        """Scale and shift that map the preprocessor's normalised inputs to [-1, 1]."""
        scale, shift = torch.ones(3), torch.zeros(3)
        if normalization is not None:
            unknown = set(normalization) - {'mean', 'std'}
            mean, std = normalization.get('mean'), normalization.get('std')
            if unknown or mean is None or std is None or len(mean) != 3 or len(std) != 3:
                raise ValueError(f'{type(self).__name__} input_normalization must be dict(mean=[3 values], std=[3 '
                                 f'values]) on the 0-255 scale, got {normalization!r}')
            # x_255 = x * std + mean  ->  x_vae = x_255 / 127.5 - 1
            scale = torch.tensor(std, dtype=torch.float32) / 127.5
            shift = torch.tensor(mean, dtype=torch.float32) / 127.5 - 1
        self.normalizes_input = normalization is not None
        self.register_buffer('input_scale', scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer('input_shift', shift.view(1, 3, 1, 1), persistent=False)

    @property
    def latent_stride(self) -> int:
        """Pixel stride of the VAE latent (8 for Stable Diffusion)."""
        return 2 ** sum(1 for b in self.vae.encoder.down_blocks if b.downsamplers is not None)

    @property
    def size_divisor(self) -> int:
        """Inputs are padded to a multiple of this so every UNet level has an integer size."""
        unet_down = sum(1 for b in self.unet.down_blocks if getattr(b, 'downsamplers', None) is not None)
        return self.latent_stride * 2 ** unet_down

    def train(self, mode: bool = True) -> 'StableDiffusionBackbone':
        """Only the UNet follows ``mode``; the frozen VAE and text encoder always stay in eval mode."""
        super().train(mode)
        self.vae.eval()
        self.text_encoder.eval()
        return self

    # ---- prompts -------------------------------------------------------------------------------------------------
    def encode_prompt(self, phrases: Sequence[str]) -> PromptEncoding:
        """Encode prompt phrases with the frozen text encoder (cached, never truncated)."""
        return self.prompt_encoder.encode(phrases)

    def prompt_embeddings(self) -> Tensor:
        """Embeddings (1, L, D) of the prompt source's phrases (encoded once)."""
        return self.encode_prompt(self.prompt_source.phrases()).embeddings

    def _conditioning(self, batch_size: int, encoder_hidden_states: Optional[Tensor], device) -> Tensor:
        """Prompt embeddings for a batch in the UNet's dtype: the given ones or the prompt source's."""
        if encoder_hidden_states is None:
            encoder_hidden_states = self.prompt_embeddings()
        if encoder_hidden_states.shape[0] == 1 and batch_size > 1:
            encoder_hidden_states = encoder_hidden_states.expand(batch_size, -1, -1)
        return encoder_hidden_states.to(device=device, dtype=self.unet.dtype)

    # ---- images and latents --------------------------------------------------------------------------------------
    def check_and_pad(self, images: Tensor) -> Tensor:
        """Check an input batch, map it to [-1, 1] and pad it (replicate) to a multiple of ``size_divisor``."""
        name = type(self).__name__
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'{name} expects images of shape (N, 3, H, W), got {tuple(images.shape)}')
        finite = torch.isfinite(images)
        if not finite.all():
            raise ValueError(f'{name}: the input batch holds {int((~finite).sum())} NaN/inf values; '
                             'check the images and the data preprocessor')
        if self.normalizes_input:
            images = images * self.input_scale.to(images.dtype) + self.input_shift.to(images.dtype)
        height, width = images.shape[-2:]
        pad_h, pad_w = (-height) % self.size_divisor, (-width) % self.size_divisor
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), mode='replicate')
        return images

    def encode_latents(self, images: Tensor) -> Tensor:
        """VAE-encode images in [-1, 1] into scaled latents (no gradient: the VAE is frozen)."""
        with torch.no_grad():
            posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
            use_sample = self.latent_mode == 'sample' or (self.latent_mode == 'sample_in_training' and self.training)
            latents = posterior.sample() if use_sample else posterior.mode()
        return latents * self.vae.config.scaling_factor

    def run_unet(self, *args, **kwargs):
        """Call the UNet; with ``compile``, fall back to eager (logged once) if compilation fails."""
        if self.compile_cfg is None or self.unet._compiled_call_impl is None:
            return self.unet(*args, **kwargs)
        try:
            return self.unet(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as error:
            self.unet._compiled_call_impl = None  # what nn.Module.compile set: the eager call from now on
            cause = getattr(error, 'inner_exception', None) or error.__cause__ or error
            reason = ' '.join(str(cause).split())[:300]
            print_log(f'{type(self).__name__}: torch.compile({self.compile_cfg}) of the UNet failed, running it '
                      f'eagerly: {type(cause).__name__}: {reason}', logger='current', level=30)
            return self.unet(*args, **kwargs)

    def timesteps(self, batch_size: int, device) -> Tensor:
        """The fixed timestep for each image of a batch."""
        return torch.full((batch_size, ), self.timestep, device=device, dtype=torch.long)

    # ---- LoRA and checkpoints ------------------------------------------------------------------------------------
    def frozen_state_keys(self) -> List[str]:
        """State-dict keys of the weights that never train: VAE, text encoder, and the UNet's base weights except
        ``conv_in`` when it trains (all of the UNet is kept once the LoRA is merged, ``deploy=True``)."""
        trained = ('unet.conv_in.', ) if self.train_conv_in else ()
        keys = []
        for key in persistent_state(self):
            if key.startswith(('vae.', 'text_encoder.')):
                keys.append(key)
            elif (key.startswith('unet.') and not self.deploy and 'lora_' not in key
                  and not key.replace('.base_layer', '').startswith(trained)):
                keys.append(key)
        return keys

    def frozen_weights_source(self) -> str:
        """What the frozen weights were built from (for the error of a checkpoint trained on others)."""
        return f'pretrained={self.pretrained!r}, merge_adapters={self.merge_adapters}, deploy={self.deploy}'

    def merge_lora(self) -> None:
        """Fold the trainable LoRA into the UNet weights and drop the LoRA layers (then ``deploy`` is True)."""
        merge_injected_adapter(self.unet, self.adapter_name)
        self.unet.requires_grad_(False)
        self.deploy = True

    def export_adapter(self, out_dir: str) -> None:
        """Write the trainable LoRA (and ``conv_in`` when it is trained) as an adapter folder that
        ``merge_adapters``, plain peft and plain diffusers accept (see :func:`save_lora_adapter`). Refuses a
        folder that already holds files."""
        if self.deploy:
            raise ValueError(f'{type(self).__name__}: deploy=True holds no LoRA adapter to export')
        if osp.isdir(out_dir) and os.listdir(out_dir):
            raise FileExistsError(f'adapter folder {out_dir} is not empty; choose a new folder')
        save_lora_adapter(self.unet, self.adapter_name, out_dir,
                          trained_modules=('conv_in', ) if self.train_conv_in else ())
