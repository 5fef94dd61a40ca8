"""The MMSegInferencer fix (rass_mmseg/compat/mmseg_inferencer.py) and the inference pipelines of every config.

``MMSegInferencer`` builds its pipeline from ``test_dataloader.dataset.pipeline``; ``inference_model`` from the
top-level ``test_pipeline`` (its first step renamed ``LoadImageFromNDArray`` for array inputs). Both are checked
here for every config without building a model (the models themselves run in tests/test_apis).
"""
import copy
import functools
import glob
import os.path as osp

import mmengine.config.utils
import numpy as np
import pytest
from mmcv.transforms import Compose, LoadImageFromFile
from mmengine.config import Config
from mmseg.apis import MMSegInferencer
from mmseg.datasets.transforms.loading import InferencerLoader, LoadImageFromNDArray
from mmseg.registry import TRANSFORMS
from PIL import Image

from rass_mmseg.compat import mmseg_inferencer
from rass_mmseg.datasets import LoadImageFromFileChecked
from tests.utils import repo_path

CONFIGS = sorted(path for folder in ('rass', 'scr', 'protocols')
                 for path in glob.glob(repo_path('configs', folder, '*.py')))
TEXTURES = repo_path('configs', 'protocols', 'dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py')


@pytest.fixture(autouse=True, scope='module')
def cached_package_metainfo():
    """Each ``mmseg::`` base re-reads mmseg's metafiles (about 1 s) with the same answer: cache it meanwhile."""
    original = mmengine.config.utils._get_cfg_metainfo
    mmengine.config.utils._get_cfg_metainfo = functools.lru_cache(maxsize=None)(original)
    yield
    mmengine.config.utils._get_cfg_metainfo = original


def inferencer_pipeline(cfg: Config) -> Compose:
    """The pipeline ``MMSegInferencer.__init__`` builds, without building the model."""
    return MMSegInferencer.__new__(MMSegInferencer)._init_pipeline(copy.deepcopy(cfg))


def inferencer_loader(pipeline: Compose) -> InferencerLoader:
    loaders = [step for step in pipeline.transforms if isinstance(step, InferencerLoader)]
    assert len(loaders) == 1
    return loaders[0]


def without_scope(pipeline: list) -> list:
    return [{key: value for key, value in step.items() if key != '_scope_'} for step in pipeline]


def test_the_fix_is_needed_for_the_checked_loader():
    """mmseg's own lookup is by exact name; if a later mmseg accepts subclasses, this fix can go."""
    cfg = Config.fromfile(TEXTURES)
    assert cfg.test_dataloader.dataset.pipeline[0].type == 'LoadImageFromFileChecked'
    inferencer = MMSegInferencer.__new__(MMSegInferencer)
    with pytest.raises(ValueError, match='LoadImageFromFile is not found in the test pipeline'):
        mmseg_inferencer._original_init_pipeline(inferencer, copy.deepcopy(cfg))


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_every_config_gives_both_inference_pipelines(path):
    cfg = Config.fromfile(path)
    pipeline_cfg = cfg.test_dataloader.dataset.pipeline
    assert without_scope(cfg.test_pipeline) == without_scope(pipeline_cfg)  # both APIs see tools/test.py's steps
    loader_cfg = pipeline_cfg[0]
    loader_type = TRANSFORMS.get(loader_cfg.type)
    assert issubclass(loader_type, LoadImageFromFile)  # inference_model renames step 0 for array inputs

    pipeline = inferencer_pipeline(cfg)
    names = [type(step).__name__ for step in pipeline.transforms]
    assert 'LoadAnnotations' not in names and names[-1] == 'PackSegInputs'
    loader = inferencer_loader(pipeline)
    assert type(loader.from_file) is loader_type  # the config's own loader reads files
    assert type(loader.from_ndarray) is LoadImageFromNDArray
    for key in ('color_type', 'imdecode_backend', 'to_float32'):
        assert getattr(loader.from_file, key) == loader_cfg.get(key, getattr(LoadImageFromFile(), key))

    array_pipeline = copy.deepcopy(cfg.test_pipeline)  # what inference_model does with an ndarray
    array_pipeline[0]['type'] = 'LoadImageFromNDArray'
    assert type(Compose(array_pipeline).transforms[0]) is LoadImageFromNDArray
    assert type(Compose(copy.deepcopy(cfg.test_pipeline)).transforms[0]) is loader_type


def test_loader_arguments_and_class_types_are_kept():
    pipeline_cfg = [dict(type=LoadImageFromFileChecked, imdecode_backend='pillow', color_type='color'),
                    dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    assert mmseg_inferencer.loader_subclass_index(pipeline_cfg) == 0
    cfg = Config(dict(test_dataloader=dict(dataset=dict(pipeline=pipeline_cfg))))
    loader = inferencer_loader(inferencer_pipeline(cfg))
    assert type(loader.from_file) is LoadImageFromFileChecked and loader.from_file.imdecode_backend == 'pillow'
    assert loader.from_ndarray.imdecode_backend == 'pillow'


@pytest.mark.parametrize('steps,expected', [
    (['LoadImageFromFile', 'LoadImageFromFileChecked'], None),  # the first loader is mmcv's: mmseg's code as is
    (['Resize', 'LoadImageFromFileChecked'], 1),
    (['LoadImageFromNDArray', 'PackSegInputs'], None),  # an array loader cannot read files: mmseg decides
    (['PackSegInputs'], None),
])
def test_which_loader_the_fix_takes(steps, expected):
    assert mmseg_inferencer.loader_subclass_index([dict(type=step) for step in steps]) == expected


def test_a_pipeline_without_loader_keeps_mmseg_error():
    cfg = Config(dict(test_dataloader=dict(dataset=dict(pipeline=[dict(type='PackSegInputs')]))))
    with pytest.raises(ValueError, match='LoadImageFromFile is not found in the test pipeline'):
        inferencer_pipeline(cfg)


def test_inferencer_pipeline_reads_files_and_arrays_and_names_a_damaged_file(tmp_path):
    pipeline = inferencer_pipeline(Config.fromfile(TEXTURES))
    image = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    Image.fromarray(image[..., ::-1]).save(tmp_path / 'good.png')
    from_file = pipeline(str(tmp_path / 'good.png'))
    from_array = pipeline(image)
    assert from_file['inputs'].shape == (3, 9, 11)
    assert np.array_equal(from_file['inputs'].numpy(), from_array['inputs'].numpy())
    assert from_file['data_samples'].img_path == str(tmp_path / 'good.png')
    assert from_array['data_samples'].img_path is None

    broken = tmp_path / 'broken.png'
    broken.write_bytes((tmp_path / 'good.png').read_bytes()[:40])
    with pytest.raises(OSError) as error:
        pipeline(str(broken))
    message = str(error.value)
    assert message.startswith(f'{broken}: cannot read the image') and '\n' not in message
