"""VSD (OSEDiff's third loss term): the three views of one UNet, the gradient, and the two-optimizer step."""
import copy

import pytest
import torch
import torch.distributed as dist
from diffusers import UNet2DConditionModel
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmseg.registry import MODELS
from peft.tuners.tuners_utils import BaseTunerLayer

from rass_mmseg.engine import TwoStepDistributedDataParallel
from rass_mmseg.models.adapters.adapter_views import active_adapters
from rass_mmseg.models.adapters.lora_adapters import _base_weights, lora_parameter_names
from rass_mmseg.models.losses import VariationalScoreDistillationLoss
from tests.utils import repo_path
from tests.utils import scr_batch as batch

SCR = repo_path('configs', 'scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py')


@pytest.fixture(scope='module')
def scr_cfg() -> dict:
    cfg = Config.fromfile(SCR).model.to_dict()
    cfg['vsd_loss'] = dict(type='VariationalScoreDistillationLoss', guidance_scale=3.0)
    cfg['backbone']['regularizer'] = dict()
    return cfg


def without_vsd(cfg: dict) -> dict:
    cfg = copy.deepcopy({k: v for k, v in cfg.items() if k != 'vsd_loss'})
    del cfg['backbone']['regularizer']
    return cfg


def build(cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # a trained restorer: non-zero SCR LoRA and a changed conv_in
        for name, param in model.backbone.unet.named_parameters():
            if '.scr.' in name or ('conv_in' in name and 'lora_' not in name):
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


def plain_unet(model) -> UNet2DConditionModel:
    """The pretrained UNet as a separate diffusers model: no LoRA layers, the conv_in of before training."""
    unet = UNet2DConditionModel(**Config.fromfile(SCR).tiny_sd.unet)
    weights = _base_weights(model.backbone.unet)
    originals = model.backbone._original_weights()
    weights.update({name.replace('.base_layer', ''): value for name, value in originals.items()})
    unet.load_state_dict(weights)
    return unet.eval()


def inputs(model, size=8):
    generator = torch.Generator().manual_seed(5)
    noisy = torch.randn(2, 4, size, size, generator=generator)
    conditioning = torch.randn(2, 6, 32, generator=generator)
    return noisy, torch.tensor([100, 700]), conditioning


def test_pretrained_view_is_the_plain_unet_with_guidance(scr_cfg):
    model = build(scr_cfg).eval()
    noisy, timesteps, conditioning = inputs(model)
    unet = plain_unet(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with torch.no_grad():
        ours = model.vsd_loss.guided_noise(model.backbone, noisy, timesteps, conditioning, None)
        negative = model.backbone.encode_prompt(['']).embeddings.expand(2, -1, -1)
        uncond = unet(noisy, timesteps, encoder_hidden_states=negative).sample
        cond = unet(noisy, timesteps, encoder_hidden_states=conditioning).sample
    torch.testing.assert_close(ours, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}  # the views change no flag
    plain = build(without_vsd(scr_cfg)).eval()
    with torch.no_grad():  # the generator is the same restorer as without VSD: its trained LoRA and conv_in
        generator = model.backbone.unet(noisy, timesteps, encoder_hidden_states=conditioning).sample
        torch.testing.assert_close(
            generator, plain.backbone.unet(noisy, timesteps, encoder_hidden_states=conditioning).sample)
    assert not torch.allclose(generator, cond, atol=1e-3)


def test_regularizer_view_has_only_its_own_adapter(scr_cfg):
    model = build(scr_cfg).eval()
    noisy, timesteps, conditioning = inputs(model)
    backbone = model.backbone
    with torch.no_grad():
        fresh = backbone.regularizer_noise(noisy, timesteps, conditioning)
        plain = plain_unet(model)(noisy, timesteps, encoder_hidden_states=conditioning).sample
        torch.testing.assert_close(fresh, plain, rtol=1e-4, atol=1e-5)  # a new adapter is a no-op
        for name in lora_parameter_names(model.backbone.unet, 'vsd'):
            if 'lora_B' in name:
                model.backbone.unet.get_parameter(name).fill_(0.01)
        trained = backbone.regularizer_noise(noisy, timesteps, conditioning)
        for name in lora_parameter_names(model.backbone.unet, 'scr'):
            model.backbone.unet.get_parameter(name).mul_(3)  # the generator's adapter plays no part
        assert torch.equal(trained, backbone.regularizer_noise(noisy, timesteps, conditioning))
    assert not torch.allclose(trained, fresh, atol=1e-4)


def test_views_switch_adapters_through_diffusers_and_restore_them(scr_cfg):
    model = build(scr_cfg)
    unet = model.backbone.unet
    layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
    flags = {n: p.requires_grad for n, p in unet.named_parameters()}
    assert set(unet.peft_config) == {'scr', 'vsd'} and unet.active_adapters() == ['scr']  # the restorer's
    with active_adapters(unet, ['vsd']):
        assert unet.active_adapters() == ['vsd'] and not any(m.disable_adapters for m in layers)
    with active_adapters(unet, None):
        assert all(m.disable_adapters for m in layers)
    assert unet.active_adapters() == ['scr'] and not any(m.disable_adapters for m in layers)
    assert flags == {n: p.requires_grad for n, p in unet.named_parameters()}


def test_vsd_gradient_is_the_difference_of_the_two_clean_latents(scr_cfg, monkeypatch):
    model = build(scr_cfg)
    backbone, loss = model.backbone, model.vsd_loss
    latents = torch.randn(2, 4, 8, 8, requires_grad=True)
    eps_pretrained, eps_regularizer = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    monkeypatch.setattr(loss, 'guided_noise', lambda *args: eps_pretrained)
    monkeypatch.setattr(backbone, 'regularizer_noise', lambda *args: eps_regularizer)
    conditioning = torch.randn(2, 6, 32)
    torch.manual_seed(7)
    value = loss(backbone, latents, conditioning)
    value.backward()
    torch.manual_seed(7)  # the same timesteps and noise, by hand
    timesteps = torch.randint(20, 980, (2, ))
    noise = torch.randn(2, 4, 8, 8)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64)**2  # SD's scaled_linear schedule
    alpha = torch.cumprod(1 - betas, 0)[timesteps].float().view(2, 1, 1, 1)
    noisy = alpha.sqrt() * latents.detach() + (1 - alpha).sqrt() * noise
    x0_pretrained = (noisy - (1 - alpha).sqrt() * eps_pretrained) / alpha.sqrt()
    x0_regularizer = (noisy - (1 - alpha).sqrt() * eps_regularizer) / alpha.sqrt()
    weighting = (latents.detach() - x0_pretrained).abs().mean(dim=(1, 2, 3), keepdim=True)
    grad = (x0_regularizer - x0_pretrained) / weighting
    assert value.item() == pytest.approx((grad**2).mean().item(), rel=1e-4)
    torch.testing.assert_close(latents.grad, 2 * grad / grad.numel(), rtol=1e-4, atol=1e-7)


def test_regularizer_loss_reaches_only_its_adapter(scr_cfg):
    model = build(scr_cfg).train()
    noisy, _, conditioning = inputs(model)
    model.vsd_loss.regularizer_loss(model.backbone, noisy, conditioning).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all('.vsd.' in n for n in with_grad)


def test_two_optimizer_step_updates_restorer_and_regularizer(scr_cfg):
    model = build(scr_cfg).train()
    optim_cfg = dict(constructor='SCRVSDOptimWrapperConstructor', optimizer=dict(type='AdamW', lr=1e-3),
                     clip_grad=dict(max_norm=1.0))
    wrappers = build_optim_wrapper(model, optim_cfg)
    assert set(wrappers.keys()) == {'generator', 'regularizer'}
    # the regulariser's optimizer holds exactly what the backbone names as its parameters
    regularizer_params = [p for group in wrappers['regularizer'].param_groups for p in group['params']]
    assert [id(p) for p in regularizer_params] == [id(p) for p in model.backbone.regularizer_parameters()]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = batch(model, training=True)
    torch.manual_seed(0)
    raw = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
               data_samples=data['data_samples'])
    log = model.train_step(raw, wrappers)
    assert {'loss_l2', 'loss_scl', 'loss_vsd', 'loss_vsd_regularizer'} <= set(log)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any('.scr.' in n for n in changed) and any('.vsd.' in n for n in changed)
    assert all('lora_' in n or 'conv_in' in n for n in changed)
    with pytest.raises(ValueError, match="constructor='SCRVSDOptimWrapperConstructor'"):
        model.train_step(raw, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))


def test_bad_timestep_range_is_refused():
    with pytest.raises(ValueError, match=r'timestep_range must be \[low, high\)'):
        VariationalScoreDistillationLoss(timestep_range=(500, 20))


def test_the_loss_holds_no_parameters_or_state(scr_cfg):
    model = build(scr_cfg)
    assert not list(model.vsd_loss.parameters()) and not list(model.vsd_loss.buffers())
    assert not any(isinstance(value, torch.Tensor) for value in vars(model.vsd_loss).values())
    # the regulariser and its views belong to the backbone: its adapter, and the conv_in of before training
    names = set(lora_parameter_names(model.backbone.unet, 'vsd'))
    assert names and {id(model.backbone.unet.get_parameter(n)) for n in names} == {
        id(p) for p in model.backbone.regularizer_parameters()}
    assert set(model.backbone._original_weights()) == {'conv_in.base_layer.weight', 'conv_in.base_layer.bias'}
    assert build(without_vsd(scr_cfg)).backbone.regularizer_parameters() == []


def test_regularizer_keys_belong_to_the_backbone(scr_cfg):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'lora_rank'"):
        VariationalScoreDistillationLoss(lora_rank=4, lora_alpha=8)
    with pytest.raises(ValueError, match=r'needs the regulariser LoRA of the backbone: set '
                                         r'model.backbone.regularizer=dict\(\)'):
        MODELS.build({**without_vsd(scr_cfg), 'vsd_loss': scr_cfg['vsd_loss']})
    with pytest.raises(ValueError, match=r"SCRBackbone regularizer: unknown keys \['rank'\]"):
        MODELS.build({**scr_cfg, 'backbone': {**scr_cfg['backbone'], 'regularizer': dict(rank=4)}})
    with pytest.raises(ValueError, match='no VSD regulariser parameters'):
        build_optim_wrapper(build(without_vsd(scr_cfg)), dict(constructor='SCRVSDOptimWrapperConstructor',
                                                               optimizer=dict(type='AdamW', lr=1e-3)))


#: Losses of two VSD steps and the summed |weights| after them, from the fixed start of :func:`fixed_start`, computed
#: with the code before the backbone owned the regulariser (commit c85a74c, where the loss attached it and the model
#: kept the regulariser's inputs between the two updates); through TwoStepDistributedDataParallel they were the same.
#: The second step's ``loss_vsd`` reads the regulariser that the first step trained.
REFERENCE_LOSSES = [
    dict(loss_l2=0.45995473861694336, loss_scl=0.649599552154541, loss_vsd=0.08173943310976028,
         loss_vsd_regularizer=1.2142271995544434),
    dict(loss_l2=0.46376731991767883, loss_scl=0.6493291258811951, loss_vsd=0.021424349397420883,
         loss_vsd_regularizer=1.1716417074203491),
]
REFERENCE_SUMS = dict(conv_in=107.35191060809302, scr=22645.91354054539, vsd=5801.385271842947)


def fixed_start(cfg: dict):
    """The model with seeded weights that do not depend on the order its parts were built in (the regulariser's
    random LoRA init and the random head decoder are drawn afresh), trained SCR and regulariser LoRA and conv_in."""
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    torch.manual_seed(1)
    model.decode_head.load_state_dict(MODELS.build(cfg['decode_head']).state_dict())
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in model.backbone.unet.named_parameters():
            if param.requires_grad:  # the same names and order as before: the adapter is named 'vsd' as it was
                noise = torch.randn(param.shape, generator=generator) * 0.05
                param.copy_(noise) if '.vsd.' in name else param.add_(noise)
    return model.train()


@pytest.mark.parametrize('distributed', [False, True], ids=['plain', 'two_step_ddp'])
def test_vsd_steps_repeat_the_reference_numbers(scr_cfg, distributed, tmp_path):
    model = fixed_start(scr_cfg)
    wrappers = build_optim_wrapper(model, dict(constructor='SCRVSDOptimWrapperConstructor',
                                               optimizer=dict(type='AdamW', lr=1e-3), clip_grad=dict(max_norm=1.0)))
    runner = model
    if distributed:  # one gloo process: every forward of both updates goes through DDP
        dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
        runner = TwoStepDistributedDataParallel(module=model, find_unused_parameters=True)
    try:
        torch.manual_seed(3)
        data = batch(model, training=True)
        for reference in REFERENCE_LOSSES:
            raw = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                       data_samples=data['data_samples'])
            log = runner.train_step(raw, wrappers)
            assert {key: log[key].item() for key in reference} == pytest.approx(reference, rel=1e-5)
    finally:
        if distributed:
            dist.destroy_process_group()
    sums = dict(conv_in=0.0, scr=0.0, vsd=0.0)
    for name, param in model.backbone.unet.named_parameters():
        if param.requires_grad:
            key = 'vsd' if '.vsd.' in name else 'scr' if '.scr.' in name else 'conv_in'
            sums[key] += param.detach().double().abs().sum().item()
    assert sums == pytest.approx(REFERENCE_SUMS, rel=1e-6)
