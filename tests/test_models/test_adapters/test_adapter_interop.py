"""Exported adapter folders load in plain peft and plain diffusers, and our merges equal peft's bit for bit."""
import contextlib
import copy
import json
import logging
import os.path as osp
import re
import shutil
import warnings
from typing import Dict, Iterator, List

import pytest
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file

from rass_mmseg.models.adapters.lora_adapters import base_weights_fingerprint, lora_parameter_names, merge_lora_adapter
from rass_mmseg.models.utils.sd_components import build_sd_components
from tests.utils import build_rass_backbone as build
from tests.utils import randomize_seg_lora

#: What a loader says when it drops or ignores part of an adapter (peft's and diffusers' own wording).
PROBLEM = re.compile(r'missing (adapter )?keys|unexpected keys|unexpected keyword|upgrade|'
                     r'No LoRA keys associated to UNet|more than one weights file', re.IGNORECASE)
#: diffusers' notice for any LoRA without text-encoder weights (the pipeline looks for them too).
TEXT_ENCODER_NOTICE = "No LoRA keys associated to CLIPTextModel found with the prefix='text_encoder'"


class _Records(logging.Handler):

    def __init__(self, messages: List[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def loader_messages() -> Iterator[List[str]]:
    """Collect the warnings and the WARNING+ log records of peft, diffusers and transformers (diffusers' and
    transformers' loggers do not propagate, so caplog alone would miss them). They are still shown: the log
    records go to the loggers' own handlers as usual and the warnings are issued again afterwards."""
    messages: List[str] = []
    handler = _Records(messages)
    loggers = [logging.getLogger(name) for name in ('diffusers', 'peft', 'transformers')]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            yield messages
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    messages.extend(str(w.message) for w in caught)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def problems(messages: List[str]) -> List[str]:
    return [m for m in messages if PROBLEM.search(m)]


@pytest.fixture(scope='module')
def exported(tiny_cfg, tmp_path_factory) -> dict:
    """A trained-looking backbone (Seg LoRA with alpha != rank, changed conv_in), its exported folder and the
    base UNet weights it was built on."""
    cfg = tiny_cfg.model.backbone.to_dict()
    source = build(cfg, lora_alpha=8)  # alpha 8, rank 4: a loader that guesses alpha = rank gets it wrong
    randomize_seg_lora(source)
    with torch.no_grad():
        source.unet.conv_in.base_layer.weight.add_(0.1)
    folder = str(tmp_path_factory.mktemp('adapter') / 'seg_adapter')
    source.export_adapter(folder)
    base = build(cfg, deploy=True).unet.state_dict()  # same seed, no LoRA: the untrained base weights
    lora = {n.replace('.seg.', '.'): source.unet.get_parameter(n).detach()
            for n in lora_parameter_names(source.unet, 'seg')}
    return dict(cfg=cfg, source=source, folder=folder, base=base, lora=lora)


def fresh_unet(exported: dict) -> UNet2DConditionModel:
    """A plain diffusers UNet holding the base weights the adapter was trained on."""
    unet = UNet2DConditionModel(**exported['cfg']['unet'])
    unet.load_state_dict(exported['base'])
    return unet.eval()


def unet_output(unet: torch.nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 4, 16, 16, generator=generator)
    context = torch.randn(1, 5, 32, generator=generator)
    with torch.no_grad():
        return unet(latents, torch.tensor([1]), encoder_hidden_states=context).sample


def assert_same_lora(loaded: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor]) -> None:
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def load_trained_modules(unet: torch.nn.Module, folder: str) -> None:
    """What a plain user does with trained_modules.safetensors: load it into the UNet."""
    result = unet.load_state_dict(load_file(osp.join(folder, 'trained_modules.safetensors')), strict=False)
    assert not result.unexpected_keys


def test_plain_peft_loads_the_folder_exactly_and_without_warnings(exported, tmp_path):
    folder = exported['folder']
    unet = fresh_unet(exported)
    load_trained_modules(unet, folder)
    with loader_messages() as messages:
        peft_model = PeftModel.from_pretrained(unet, folder)
    assert not problems(messages), messages
    config = json.load(open(osp.join(folder, 'adapter_config.json')))
    assert not [key for key in config if key.startswith('rass')]  # our metadata lives beside peft's files
    metadata = json.load(open(osp.join(folder, 'rass_adapter.json')))
    assert metadata['trained_modules'] == ['conv_in']
    assert metadata['base_fingerprint'] == base_weights_fingerprint(fresh_unet(exported), ['conv_in'])
    loaded = get_peft_model_state_dict(peft_model)
    assert all(k.startswith('base_model.model.') for k in loaded)
    assert_same_lora({k[len('base_model.model.'):]: v for k, v in loaded.items()}, exported['lora'])
    assert peft_model.peft_config['default'].lora_alpha == 8

    # what peft itself writes for this model is what we wrote, and our loader reads it (no rass metadata)
    peft_folder = str(tmp_path / 'written_by_peft')
    peft_model.save_pretrained(peft_folder)
    ours_file = load_file(osp.join(folder, 'adapter_model.safetensors'))
    assert_same_lora(load_file(osp.join(peft_folder, 'adapter_model.safetensors')), ours_file)
    base_with_conv_in = fresh_unet(exported)
    load_trained_modules(base_with_conv_in, folder)
    by_peft_folder = merge_lora_adapter(base_with_conv_in, peft_folder, name='x')

    by_peft = unet_output(peft_model.merge_and_unload())
    ours = unet_output(merge_lora_adapter(fresh_unet(exported), folder, name='x'))
    torch.testing.assert_close(by_peft, ours, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(unet_output(by_peft_folder), ours, rtol=1e-5, atol=1e-6)
    # and both are the trained model itself (LoRA not merged), up to the rounding of the merge
    torch.testing.assert_close(ours, unet_output(exported['source'].unet.eval()), rtol=1e-4, atol=1e-5)


def test_plain_diffusers_unet_loads_the_folder_exactly_and_without_warnings(exported):
    folder = exported['folder']
    unet = fresh_unet(exported)
    load_trained_modules(unet, folder)
    with loader_messages() as messages:
        unet.load_lora_adapter(folder, prefix='unet', use_safetensors=True, adapter_name='scr')
    assert not problems(messages), messages
    assert_same_lora(get_peft_model_state_dict(unet, adapter_name='scr'), exported['lora'])
    assert unet.peft_config['scr'].lora_alpha == 8  # read from the file's metadata, not guessed from the rank
    torch.testing.assert_close(unet_output(unet), unet_output(exported['source'].unet.eval()))


def test_diffusers_pipeline_load_lora_weights_takes_the_folder_as_it_is(exported):
    cfg = exported['cfg']
    vae, unet, text_encoder, tokenizer = build_sd_components(vae=cfg['vae'], unet=cfg['unet'],
                                                             text_encoder=cfg['text_encoder'])
    unet.load_state_dict(exported['base'])
    scheduler = DDPMScheduler(steps_offset=1, clip_sample=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    with loader_messages() as messages:
        pipe.load_lora_weights(exported['folder'])
    # the only message is diffusers' notice that this UNet-only LoRA has no text-encoder part
    assert [m for m in messages if not m.startswith(TEXT_ENCODER_NOTICE)] == []
    assert not getattr(text_encoder, 'peft_config', None)
    (name, config), = pipe.unet.peft_config.items()
    assert config.lora_alpha == 8
    assert_same_lora(get_peft_model_state_dict(pipe.unet, adapter_name=name), exported['lora'])


def test_merges_equal_peft_merge_and_unload_bit_for_bit(exported):
    """Both merges (a folder into a UNet; the backbone's own adapter, ``merge_lora``) give exactly the weights of
    peft's ``merge_and_unload``, done here independently on the same folder (the merges before diffusers'
    ``fuse_lora`` + ``unload_lora`` did the work were peft's)."""
    folder = exported['folder']
    base_with_conv_in = fresh_unet(exported)
    load_trained_modules(base_with_conv_in, folder)
    reference = PeftModel.from_pretrained(base_with_conv_in, folder).merge_and_unload().state_dict()
    from_folder = merge_lora_adapter(fresh_unet(exported), folder, name='x').state_dict()
    backbone = copy.deepcopy(exported['source'])
    backbone.merge_lora()
    injected = backbone.unet.state_dict()
    for merged in (from_folder, injected):
        assert merged.keys() == reference.keys()
        assert all(torch.equal(merged[key], reference[key]) for key in reference)
    assert not torch.equal(reference['conv_in.weight'], exported['base']['conv_in.weight'])
    lora_target = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight'
    assert not torch.equal(reference[lora_target], exported['base'][lora_target])  # the LoRA was merged


def test_metadata_errors_name_the_file(exported, tmp_path):
    folder = tmp_path / 'adapter'
    shutil.copytree(exported['folder'], folder)
    with pytest.raises(ValueError, match=r'another base UNet .*adapter/rass_adapter\.json') as error:
        merge_lora_adapter(UNet2DConditionModel(**exported['cfg']['unet']), str(folder), name='x')
    assert '\n' not in str(error.value)

    metadata_file = folder / 'rass_adapter.json'
    metadata = json.loads(metadata_file.read_text())
    metadata_file.write_text(json.dumps({**metadata, 'format_version': 99}))
    with pytest.raises(ValueError, match=r'rass_adapter\.json: format_version 99'):
        merge_lora_adapter(fresh_unet(exported), str(folder), name='x')
    metadata_file.write_text('{not json')
    with pytest.raises(ValueError, match=r'rass_adapter\.json: not a readable JSON file'):
        merge_lora_adapter(fresh_unet(exported), str(folder), name='x')
    metadata_file.write_text(json.dumps(metadata))
    (folder / 'trained_modules.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match=r'rass_adapter\.json lists trained modules .*trained_modules'):
        merge_lora_adapter(fresh_unet(exported), str(folder), name='x')
