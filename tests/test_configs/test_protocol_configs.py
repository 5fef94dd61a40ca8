"""The protocol configs (DT / FT / R2S, tiny and full size): they parse, degrade the LQ test set exactly once, use
the dataset keys of configs/_base_/datasets, build their models, and the tiny ones run through the tools."""
import copy
import functools
import glob
import os.path as osp
import re

import mmengine.config.utils
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import CheckpointLoader, Runner
from mmseg.registry import MODELS

from rass_mmseg.compat import load_from_local_weights_only
from rass_mmseg.models.utils.sd_components import without_weights
from tests.utils import needs_made_tiny_sd, repo_path

PROTOCOLS = sorted(glob.glob(repo_path('configs', 'protocols', '*.py')))
TINY = [path for path in PROTOCOLS if 'tiny' in osp.basename(path) and not needs_made_tiny_sd(path)]
FULL_SIZE_BASELINES = {  # config -> parameters (mmseg's SegFormer-B5 decoder has 256 channels, the paper's 768)
    'dt-segformer_mit-b5_8xb2-160k_ade20k-lq-512x512.py': 82_008_406,
    'dt-mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-lq-640x640.py': 215_488_779,
}
DATASETS = {'ade20k-lq': 'ade20k_lq.py', 'reallq': 'reallq.py', 'textures': 'textures.py'}
FAST = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        'test_dataloader.dataset.indices=4', 'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1']


@pytest.fixture(autouse=True, scope='module')
def cached_package_metainfo():
    """mmengine re-reads mmseg's 53 metafile YAMLs for every ``mmseg::`` experiment base (about 1 s); the answer is
    the same each time, so cache it while this module runs."""
    original = mmengine.config.utils._get_cfg_metainfo
    mmengine.config.utils._get_cfg_metainfo = functools.lru_cache(maxsize=None)(original)
    yield
    mmengine.config.utils._get_cfg_metainfo = original


def name(path: str) -> str:
    return osp.basename(path)


@functools.lru_cache(maxsize=None)
def load(path: str) -> Config:
    return Config.fromfile(path)


def degrades_test_images(preprocessor: ConfigDict) -> bool:
    return preprocessor.type == 'DegradationDataPreProcessor' and preprocessor.get('degrade', 'train') == 'always'


def protocol_of(path: str) -> str:
    """'dt', 'ft' or 'r2s': the algorithm part of the name before its first '-' or '_'."""
    return re.split(r'[-_]', name(path))[0]


def dataset_keys(dataset: ConfigDict) -> dict:
    return {key: dataset.get(key) for key in ('type', 'data_root', 'data_prefix', 'img_suffix')}


def test_protocol_folder_is_complete():
    for protocol in ('dt', 'ft', 'r2s'):
        names = {name(path) for path in PROTOCOLS if protocol_of(path) == protocol}
        for model in ('segformer', 'mask2former'):
            assert any(model in n and 'tiny' in n for n in names), (protocol, model)
            for dataset in ('ade20k-lq', 'reallq'):
                assert any(model in n and dataset in n for n in names), (protocol, model, dataset)


@pytest.mark.parametrize('path', PROTOCOLS, ids=name)
def test_protocol_config_parses_and_degrades_the_test_set_once(path):
    cfg = load(path)
    assert 'rass_mmseg' in cfg.custom_imports.imports
    runtime = load(repo_path('configs', '_base_', 'default_runtime.py'))
    assert cfg.custom_hooks == runtime.custom_hooks and cfg.visualizer.type == runtime.visualizer.type
    assert MODELS.get(cfg.model.type) is not None
    assert cfg.test_dataloader.dataset == cfg.val_dataloader.dataset
    text = open(path).read()
    assert not re.search(r"""['"]/""", text), 'absolute path in ' + path
    for value in (cfg.get('load_from'), cfg.model.get('restorer_checkpoint'), cfg.model.get('segmentor_checkpoint')):
        assert value is None or not osp.isabs(value), value

    # the evaluation images are those of the dataset config the name says
    dataset = next(key for key in DATASETS if key in name(path))
    reference = load(repo_path('configs', '_base_', 'datasets', DATASETS[dataset])).test_dataloader.dataset
    assert dataset_keys(cfg.test_dataloader.dataset) == dataset_keys(reference)

    # LQ images are made exactly once: on disk (ADE20K-LQ, RealLQ) or on the fly in test mode (textures-lq)
    online_lq = 'textures-lq' in name(path)
    protocol = protocol_of(path)
    preprocessor = cfg.model.data_preprocessor
    if protocol == 'dt' and 'textures' in name(path):  # clean training and validation; LQ test: the FT config
        assert preprocessor.type == 'SegDataPreProcessor'
    else:
        assert degrades_test_images(preprocessor) == online_lq, preprocessor
    if protocol == 'ft':
        assert preprocessor.type == 'DegradationDataPreProcessor'  # degraded training images
    if protocol == 'r2s':
        assert cfg.model.type == 'RestoreThenSegment'
        for key in ('restorer', 'segmentor'):
            assert osp.isabs(cfg.model[key]) and '{{' not in cfg.model[key]  # {{fileDirname}} was resolved
        assert osp.isfile(cfg.model.segmentor), cfg.model.segmentor


@pytest.mark.parametrize('path', TINY, ids=name)
def test_tiny_config_builds(path):
    cfg = copy.deepcopy(load(path).model)
    if cfg.type == 'RestoreThenSegment':
        assert osp.isfile(cfg.restorer), cfg.restorer
        cfg.restorer_checkpoint = cfg.segmentor_checkpoint = None  # checkpoints come from training runs
    model = MODELS.build(cfg)
    if cfg.type == 'RestoreThenSegment':
        assert type(model.restorer).__name__ == 'SemanticConstrainedRestorer'
        assert not any(parameter.requires_grad for parameter in model.parameters())
    else:
        assert sum(parameter.numel() for parameter in model.parameters()) < 1e6
        assert model.decode_head.num_classes == 8


@pytest.mark.parametrize('config', sorted(FULL_SIZE_BASELINES))
def test_full_size_baseline_builds(config):
    cfg = load(repo_path('configs', 'protocols', config))
    model = MODELS.build(copy.deepcopy(cfg.model))  # no weights read: pre-training init_cfg acts in init_weights()
    assert sum(parameter.numel() for parameter in model.parameters()) == FULL_SIZE_BASELINES[config]
    assert model.decode_head.num_classes == 150
    ft = load(repo_path('configs', 'protocols', config.replace('dt-', 'ft-')))
    preprocessor = MODELS.build(copy.deepcopy(ft.model.data_preprocessor))
    assert type(preprocessor).__name__ == 'DegradationDataPreProcessor' and preprocessor.degrade == 'train'
    assert ft.model.data_preprocessor.degradation.ops == 'basicsr'  # the paper-size runs: public code's ops
    torch.testing.assert_close(preprocessor.mean.flatten(), model.data_preprocessor.mean.flatten())
    assert preprocessor.size == model.data_preprocessor.size


def weight_free(model: ConfigDict, sd21: Config) -> ConfigDict:
    """A Stable Diffusion based model config built from the SD 2.1-base architecture dicts instead of weights."""
    model = copy.deepcopy(model)
    without_weights(model, sd21.sd21_base_vae, sd21.sd21_base_unet, sd21.sd21_base_text_encoder)
    return model


def test_full_size_r2s_configs_name_existing_sub_configs_and_build_without_weights():
    for path in [p for p in PROTOCOLS if name(p).startswith('r2s_scr-sd21')]:
        cfg = load(path)
        assert osp.isfile(cfg.model.restorer), cfg.model.restorer
        assert osp.isfile(cfg.model.segmentor)
        restorer = load(cfg.model.restorer).model
        assert restorer.type == 'SemanticConstrainedRestorer'
        # the R2S preprocessor normalises as the restorer expects (checked again when the model is built)
        for key in ('mean', 'std', 'bgr_to_rgb'):
            assert cfg.model.data_preprocessor[key] == restorer.data_preprocessor[key], (path, key)

    # SCR + RASS on the meta device (mmseg's MiT and Swin cannot be built there: their drop-path rates call .item())
    cfg = load(repo_path('configs', 'protocols', 'r2s_scr-sd21-base_rass-sd21-base-mask2former_ade20k-lq-512x512.py'))
    sd21 = load(cfg.model.restorer)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.restorer = weight_free(sd21.model, sd21)
    model_cfg.segmentor = weight_free(load(cfg.model.segmentor).model, sd21)
    model_cfg.restorer_checkpoint = model_cfg.segmentor_checkpoint = None
    with torch.device('meta'):
        model = MODELS.build(model_cfg)
    assert type(model.restorer).__name__ == 'SemanticConstrainedRestorer'
    assert type(model.segmentor).__name__ == 'RASSEncoderDecoder'
    assert not any(parameter.requires_grad for parameter in model.parameters())
    assert sum(parameter.numel() for parameter in model.parameters()) > 2.5e9  # two SD 2.1 UNets and encoders


def test_tiny_dt_baseline_trains_through_tools_and_r2s_tests_its_checkpoint(tmp_path, in_process_tool):
    dt = repo_path('configs', 'protocols', 'dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py')
    work_dir = tmp_path / 'dt'
    in_process_tool(repo_path('tools', 'train.py'), dt, '--work-dir', str(work_dir), '--cfg-options',
                    'train_cfg.max_iters=2', *FAST)
    checkpoint = work_dir / 'iter_2.pth'
    assert load_from_local_weights_only(str(checkpoint))['meta']['iter'] == 2

    # R2S as mmseg's tools/test.py runs it: the DT checkpoint given as load_from goes into the segmentor; LQ images
    # are made on the fly (degrade='always')
    r2s = repo_path('configs', 'protocols', 'r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py')
    cfg = Config.fromfile(r2s)
    assert osp.isfile(cfg.model.restorer), cfg.model.restorer
    cfg.merge_from_dict({'model.restorer_checkpoint': None, 'model.segmentor_checkpoint': None,
                         'test_dataloader.dataset.data_root': str(tmp_path / 'data' / 'textures'),
                         'test_dataloader.dataset.indices': 4, 'test_dataloader.num_workers': 0,
                         'test_dataloader.persistent_workers': False})
    cfg.work_dir, cfg.load_from, cfg.experiment_name = str(tmp_path / 'r2s'), str(checkpoint), 'protocol_r2s_test'
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    assert 0 <= metrics['mIoU'] <= 100
    trained = CheckpointLoader.load_checkpoint(str(checkpoint), map_location='cpu')['state_dict']
    segmentor = runner.model.segmentor.state_dict()
    assert set(trained) == set(segmentor) and all(torch.equal(segmentor[key], trained[key]) for key in trained)
