"""The official-test configs: the paper model with the public code's test setting (PIL resize, black padding to 8,
RAM tags of the whole padded image as the prompt), built at paper size on the meta device without any weights."""
import copy

import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from rass_mmseg.models.utils.sd_components import without_weights
from tests.utils import repo_path

PAPER = repo_path('configs', 'rass', 'rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py')
OFFICIAL = repo_path('configs', 'rass', 'rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512_official-test.py')
OFFICIAL_REALLQ = repo_path('configs', 'rass', 'rass_sd21-base_mask2former_8xb2-160k_reallq-512x512_official-test.py')
RAM_TAGS = 4585  # lines of the authors' restoration_adaptation/ram/data/ram_tag_list.txt


def meta_model(cfg: Config):
    model_cfg = copy.deepcopy(cfg.model)
    without_weights(model_cfg, cfg.sd21_base_vae, cfg.sd21_base_unet, cfg.sd21_base_text_encoder)
    with torch.device('meta'):
        return MODELS.build(model_cfg)


def test_official_test_config_is_the_paper_model_with_the_public_test_prompt(tmp_path):
    cfg = Config.fromfile(OFFICIAL)
    source = cfg.model.backbone.prompt_source
    assert source.type == 'ImageTagsPrompt' and source.scope == 'image' and source.suffix == ''
    assert source.tagger.weights == 'checkpoints/rass_official/ram.safetensors'
    assert cfg.model.backbone.pretrained == 'checkpoints/rass_official/rass_sd21-base-scr'
    assert cfg.model.test_cfg == dict(mode='slide_features', pad_to_multiple=8, pad_value=-1.0)
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'PILResizeShortestEdge'
    assert 'ADEChallengeData2016-LQ' in cfg.test_dataloader.dataset.data_prefix.img_path
    assert Config.fromfile(OFFICIAL_REALLQ).test_dataloader.dataset.data_root == 'data/RealLQ'

    (tmp_path / 'tags.txt').write_text(''.join(f'tag {i}\n' for i in range(RAM_TAGS)))
    (tmp_path / 'thresholds.txt').write_text('0.68\n' * RAM_TAGS)
    source.tagger.update(tag_list=str(tmp_path / 'tags.txt'), thresholds=str(tmp_path / 'thresholds.txt'),
                         weights=None)  # no weights here: built at RAM's sizes, random
    model = meta_model(cfg)
    tagger = model.backbone.tagger
    assert type(tagger).__name__ == 'RAMTagger' and not any(p.requires_grad for p in tagger.parameters())
    assert len(tagger.tags) == RAM_TAGS
    # what trains, and so what the converted rass.pth must hold, is the paper model's
    paper = meta_model(Config.fromfile(PAPER))
    trained = {k: tuple(p.shape) for k, p in model.named_parameters() if p.requires_grad}
    assert trained == {k: tuple(p.shape) for k, p in paper.named_parameters() if p.requires_grad}
    tagger_size = sum(p.numel() for p in tagger.parameters())
    print(f'\nRAM tagger: {tagger_size / 1e6:.1f}M parameters')
    assert 190e6 < tagger_size < 250e6  # Swin-L (197M) + the tagging head; RAM's captioning parts are not built

