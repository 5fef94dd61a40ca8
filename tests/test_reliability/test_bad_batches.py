"""Bad batches get a one-line error where they enter the model (issue 21, items 7b and 7c): labels the model has no
class for (naming the label file, in training and in validation, read by mmseg's plain ``LoadAnnotations`` as the
texture configs do) and an empty batch."""
import copy
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample
from PIL import Image

from rass_mmseg.datasets.texture_generator import generate_texture_dataset
from tests.utils import TINY, repo_path, scr_batch

NUM_CLASSES = 8  # the texture dataset's classes: labels 0..7, 255 ignored
EMPTY = r'^{}: the batch is empty \(0 images\); a batch needs at least one image$'
R2S_SEGMENTOR = repo_path('configs', 'protocols', 'dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py')


@pytest.fixture(scope='module')
def textures(tmp_path_factory) -> dict:
    """A small texture dataset whose first training and first validation label maps hold labels 8 and 200 (and
    whose second training map holds ignored pixels, which are fine), read with the texture config's pipelines."""
    init_default_scope('mmseg')  # module fixtures run before conftest's per-test scope fixture
    root = str(tmp_path_factory.mktemp('textures') / 'data')
    generate_texture_dataset(root, seed=0, num_train=2, num_val=2, image_size=64)
    cfg = Config.fromfile(TINY)
    datasets = {}
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader)):
        dataset_cfg = copy.deepcopy(loader.dataset)
        dataset_cfg.update(data_root=root, generate_cfg=None)
        datasets[split] = DATASETS.build(dataset_cfg)
    bad = {}
    for split, labels in (('train', (8, 200)), ('val', (200, ))):
        path = datasets[split].get_data_info(0)['seg_map_path']
        label_map = np.array(Image.open(path))
        for k, label in enumerate(labels):
            label_map[k * 8:(k + 1) * 8, :] = label
        Image.fromarray(label_map).save(path)
        bad[split] = path
    ignored = datasets['train'].get_data_info(1)['seg_map_path']
    label_map = np.array(Image.open(ignored))
    label_map[:8] = 255
    Image.fromarray(label_map).save(ignored)
    return dict(cfg=cfg, datasets=datasets, bad=bad)


@pytest.fixture(scope='module')
def model(textures):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(textures['cfg'].model))
    model.init_weights()
    assert model.decode_head.num_classes == NUM_CLASSES
    return model


def batch(textures, split: str, indices) -> dict:
    return pseudo_collate([textures['datasets'][split][i] for i in indices])


def label_error(path: str, labels: str) -> str:
    return (rf'^RASSEncoderDecoder: label map {re.escape(path)} \(image .*\.png\) holds label\(s\) {labels}, outside '
            rf'the classes 0\.\.{NUM_CLASSES - 1} and ignore_index 255; check the dataset')


def test_out_of_range_labels_in_training_name_the_label_file(textures, model):
    # before: IndexError: Target 200 is out of bounds, naming no file
    optim_wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.0)))
    with pytest.raises(ValueError, match=label_error(textures['bad']['train'], '8, 200')) as error:
        model.train_step(batch(textures, 'train', [1, 0]), optim_wrapper)
    assert '\n' not in str(error.value)
    # control: the other map, with labels 0..7 and ignored pixels (255), trains
    assert torch.isfinite(model.train_step(batch(textures, 'train', [1]), optim_wrapper)['loss'])


def test_out_of_range_labels_in_validation_name_the_label_file(textures, model):
    # before: predicted without a word, and IoUMetric left the pixels out of every class (see the control below)
    for step in (model.val_step, model.test_step):
        with pytest.raises(ValueError, match=label_error(textures['bad']['val'], '200')):
            step(batch(textures, 'val', [1, 0]))
    assert len(model.val_step(batch(textures, 'val', [1]))) == 1  # control: the good image validates


def test_control_iou_metric_drops_out_of_range_labels_silently():
    """Why validation must check: mmseg's IoUMetric counts a label-200 pixel in no class and raises nothing."""
    metric = IoUMetric()
    metric.dataset_meta = dict(classes=[str(c) for c in range(NUM_CLASSES)])
    gt = torch.zeros(1, 4, 4, dtype=torch.long)
    gt[:, :2] = 200
    sample = SegDataSample(gt_sem_seg=PixelData(data=gt), pred_sem_seg=PixelData(data=torch.zeros(1, 4, 4)))
    metric.process({}, [sample.to_dict()])
    area_label = metric.results[0][3]
    assert area_label.sum().item() == 8  # 16 pixels, 8 labelled 200: left out of every class


def test_restore_then_segment_checks_labels_before_restoring(textures):
    # R2S around a plain mmseg EncoderDecoder (SegFormer, mmseg's backbone): its validation dropped such pixels too
    segmentor = copy.deepcopy(Config.fromfile(R2S_SEGMENTOR).model)
    restorer = dict(type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True)
    scr = Config.fromfile(repo_path('configs', 'scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py')).model
    scr.data_preprocessor = restorer
    torch.manual_seed(0)
    model = MODELS.build(dict(type='RestoreThenSegment', restorer=scr, segmentor=segmentor))
    restored = []
    model.restorer.restore = lambda inputs: restored.append(inputs) or inputs
    with pytest.raises(ValueError, match=rf"^RestoreThenSegment: label map {re.escape(textures['bad']['val'])} .* "
                       r"holds label\(s\) 200, outside the classes 0\.\.7 and ignore_index 255; .*the segmentor's "
                       r'decode_head\.num_classes \(8 classes\)'):
        model.val_step(batch(textures, 'val', [0]))
    assert restored == []
    with pytest.raises(ValueError, match=EMPTY.format('RestoreThenSegment')):
        model.val_step(dict(inputs=[], data_samples=[]))


def test_scr_names_the_image_of_a_label_without_a_class_name_and_refuses_an_empty_batch():
    cfg = Config.fromfile(repo_path('configs', 'scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py')).model
    torch.manual_seed(0)
    scr = MODELS.build(cfg)
    data = scr_batch(scr, True, labels=((0, 2), (1, 9)))
    # before: 'label 9 has no name in gt_class_prompt', naming no image
    with pytest.raises(ValueError, match=r'^SemanticConstrainedRestorer: the label map of image img1\.png holds '
                       r'label\(s\) 9, outside the classes 0\.\.7 and ignore_index 255; .*against gt_class_prompt '
                       r'\(8 classes\)'):
        scr.loss(data['inputs'], data['data_samples'])
    with pytest.raises(ValueError, match=EMPTY.format('SemanticConstrainedRestorer')):
        scr.val_step(dict(inputs=[], data_samples=[]))
    with pytest.raises(ValueError, match=EMPTY.format('SemanticConstrainedRestorer')):
        scr(torch.zeros(0, 3, 64, 64), mode='tensor')


def test_an_empty_batch_is_refused_where_it_enters(model):
    # before: IndexError: list index out of range (in the data preprocessor) or a reshape error (in forward)
    for step in (model.val_step, model.test_step):
        with pytest.raises(ValueError, match=EMPTY.format('RASSEncoderDecoder')):
            step(dict(inputs=[], data_samples=[]))
    optim_wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.0)))
    with pytest.raises(ValueError, match=EMPTY.format('RASSEncoderDecoder')):
        model.train_step(dict(inputs=[], data_samples=[]), optim_wrapper)
    for mode in ('tensor', 'predict', 'loss'):
        with pytest.raises(ValueError, match=EMPTY.format('RASSEncoderDecoder')):
            model(torch.zeros(0, 3, 64, 64), [], mode=mode)


@pytest.mark.parametrize('training', [True, False])
def test_an_empty_batch_is_refused_by_the_degradation_preprocessor(training):
    preprocessor = MODELS.build(dict(type='DegradationDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3))
    with pytest.raises(ValueError, match=EMPTY.format('DegradationDataPreProcessor')):
        preprocessor(dict(inputs=[], data_samples=[]), training)
