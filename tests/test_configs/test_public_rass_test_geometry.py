"""The paper configs test with the public code's geometry (PIL-decoded, PIL-resized images; black padding to a
multiple of 8 before the windows slide) and train with mmseg's ADE20K pipeline, unchanged."""
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import rass_mmseg  # noqa: F401  (registers the transforms)
from tests.utils import repo_path

PAPER_CONFIGS = ['rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py',
                 'rass_sd21-base_mask2former_8xb2-160k_reallq-512x512.py',
                 'rass_sd21-base_mask2former_8xb2-160k_ade20k-512x512.py',
                 'rass_sd21-base_segformer-head_8xb2-160k_ade20k-lq-512x512.py']


def mmseg_ade20k(tmp_path) -> Config:
    (tmp_path / 'ade20k.py').write_text("_base_ = ['mmseg::_base_/datasets/ade20k.py']\n")
    return Config.fromfile(tmp_path / 'ade20k.py')


@pytest.mark.parametrize('name', PAPER_CONFIGS)
def test_paper_configs_test_as_the_public_code(name, tmp_path):
    cfg = Config.fromfile(repo_path('configs', 'rass', name))
    assert cfg.model.test_cfg == dict(mode='slide_features', pad_to_multiple=8, pad_value=-1.0)
    for pipeline in (cfg.test_pipeline, cfg.val_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline):
        assert [step['type'] for step in pipeline] == ['LoadImageFromFileChecked', 'PILResizeShortestEdge',
                                                       'LoadAnnotations', 'PackSegInputs']
        assert pipeline[0]['imdecode_backend'] == 'pillow'  # detectron2's read_image
        assert (pipeline[1]['short_edge_length'], pipeline[1]['max_size']) == (512, 2048)  # MIN/MAX_SIZE_TEST
    # training is mmseg's ADE20K pipeline, untouched
    assert cfg.train_dataloader.dataset.pipeline == mmseg_ade20k(tmp_path).train_dataloader.dataset.pipeline
    assert cfg.model.data_preprocessor.degrade == ('never' if name.endswith('_ade20k-512x512.py') else 'train')


def test_lq_test_sets_offer_the_public_pipeline_and_keep_their_own_by_default():
    sets = Config.fromfile(repo_path('configs', '_base_', 'datasets', 'lq_test_sets.py'))
    assert sets.public_rass_test_pipeline[1]['type'] == 'PILResizeShortestEdge'
    assert 'pipeline' not in sets.ade20k_lq_dataset and 'pipeline' not in sets.reallq_dataset  # the 640 baselines
    cfg = Config.fromfile(repo_path('configs', '_base_', 'datasets', 'ade20k_lq.py'))
    assert cfg.val_dataloader.dataset.pipeline[1]['type'] == 'Resize'


def test_the_paper_test_pipeline_gives_pils_pixels(tmp_path):
    """A 4:3 JPEG through the paper config's test pipeline: PIL's decode resized by PIL to 512x683 (BGR)."""
    cfg = Config.fromfile(repo_path('configs', 'rass', PAPER_CONFIGS[0]))
    rng = np.random.default_rng(0)
    image = np.kron(rng.random((61, 81, 3)), np.ones((8, 8, 1)))[:480, :640]
    Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / 'photo.jpg', quality=90)
    label = np.zeros((480, 640), np.uint8)
    Image.fromarray(label).save(tmp_path / 'photo.png')
    init_default_scope('mmseg')
    results = Compose(cfg.test_pipeline)(dict(img_path=str(tmp_path / 'photo.jpg'),
                                              seg_map_path=str(tmp_path / 'photo.png'), reduce_zero_label=True,
                                              seg_fields=[]))
    with Image.open(tmp_path / 'photo.jpg') as decoded:
        expected = np.asarray(decoded.convert('RGB').resize((683, 512), Image.BILINEAR))[..., ::-1]
    np.testing.assert_array_equal(results['inputs'].permute(1, 2, 0).numpy(), expected)
    assert results['data_samples'].gt_sem_seg.data.shape[-2:] == (480, 640)  # scored at the original size
    assert results['data_samples'].ori_shape == (480, 640) and results['data_samples'].img_shape == (512, 683)
