"""ADE20K-format evaluation sets: both released label formats load to the same class indices; the wrong one is refused.

Synthetic label maps are written as PNG in both formats from one ground truth (class indices 0..149, -1 = unlabelled):
ADE20K style = truth + 1 with 0 for unlabelled, detectron2 style = truth with 255 for unlabelled.
"""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS
from PIL import Image

from rass_mmseg.datasets import ADE20KFormatDataset, LoadAnnotationsChecked
from tests.utils import repo_path

NUM_CLASSES = 150
PLAIN_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
                  dict(type='PackSegInputs')]  # mmseg's ADE20K pipelines fix reduce_zero_label=True


def ground_truth(seed: int, shape=(32, 48), with_flag: bool = True, with_unlabelled: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, NUM_CLASSES - 1, size=shape)  # 0..148
    truth[:4, :4] = 0  # wall, the class a detectron2 map read as ADE style loses
    if with_flag:
        truth[-4:, -4:] = NUM_CLASSES - 1  # flag: 150 in ADE20K style, 149 in detectron2 style
    if with_unlabelled:
        truth[4:8, :] = -1
    return truth


def ade20k_style(truth: np.ndarray) -> np.ndarray:
    return np.where(truth < 0, 0, truth + 1).astype(np.uint8)


def detectron2_style(truth: np.ndarray) -> np.ndarray:
    return np.where(truth < 0, 255, truth).astype(np.uint8)


def expected_labels(truth: np.ndarray) -> np.ndarray:
    return np.where(truth < 0, 255, truth).astype(np.uint8)


def write_set(root, truths, encode, folder: str, palette: bool = False) -> None:
    """Images in images/validation (JPEG), label maps in ``folder``/validation (PNG, mode L or P)."""
    for index, truth in enumerate(truths):
        name = f'ADE_val_{index:08d}'
        image = np.random.default_rng(index).integers(0, 255, size=truth.shape + (3, ), dtype=np.uint8)
        (root / 'images' / 'validation').mkdir(parents=True, exist_ok=True)
        (root / folder / 'validation').mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / 'images' / 'validation' / f'{name}.jpg')
        label = Image.fromarray(encode(truth), mode='L')
        if palette:
            label = label.convert('P')  # indices equal the values: an identity palette
            label.putpalette([v for i in range(256) for v in (i, i, i)])
        label.save(root / folder / 'validation' / f'{name}.png')


@pytest.fixture(scope='module')
def both_formats(tmp_path_factory):
    root = tmp_path_factory.mktemp('ade_format')
    truths = [ground_truth(seed) for seed in range(3)]
    write_set(root, truths, ade20k_style, 'annotations')
    write_set(root, truths, detectron2_style, 'annotations_detectron2')
    return root, truths


def build(root, folder: str, pipeline=PLAIN_PIPELINE, **kwargs) -> ADE20KFormatDataset:
    return DATASETS.build(dict(type='ADE20KFormatDataset', data_root=str(root),
                               data_prefix=dict(img_path='images/validation', seg_map_path=f'{folder}/validation'),
                               pipeline=pipeline, **kwargs))


def loaded(dataset, index: int) -> np.ndarray:
    return dataset[index]['data_samples'].gt_sem_seg.data[0].numpy()


@pytest.mark.parametrize('folder, label_format', [('annotations', 'ade20k'), ('annotations_detectron2', 'detectron2')])
def test_both_formats_load_to_the_class_indices(both_formats, folder, label_format):
    root, truths = both_formats
    dataset = build(root, folder, label_format=label_format)
    assert len(dataset) == len(truths)
    for index, truth in enumerate(truths):
        np.testing.assert_array_equal(loaded(dataset, index), expected_labels(truth))


def test_palette_pngs_load_as_indices(tmp_path):
    truth = ground_truth(7)
    write_set(tmp_path, [truth], detectron2_style, 'annotations_detectron2', palette=True)
    dataset = build(tmp_path, 'annotations_detectron2', label_format='detectron2')
    np.testing.assert_array_equal(loaded(dataset, 0), expected_labels(truth))


def test_the_loader_is_swapped_and_other_steps_kept(both_formats):
    root, _ = both_formats
    dataset = build(root, 'annotations_detectron2', label_format='detectron2')
    steps = dataset.pipeline.transforms
    assert [type(step).__name__ for step in steps] == ['LoadImageFromFile', 'LoadAnnotationsChecked', 'PackSegInputs']
    assert steps[1].num_classes == NUM_CLASSES and steps[1].reduce_zero_label is None
    assert dataset.reduce_zero_label is False


def test_checked_loader_equals_mmseg_loader_on_valid_maps(both_formats):
    """Same output as mmseg's LoadAnnotations (also with a class subset's label_map)."""
    root, _ = both_formats
    path = str(root / 'annotations' / 'validation' / 'ADE_val_00000001.png')
    for label_map in (None, {0: 255, 5: 0}):
        results = lambda: dict(seg_map_path=path, reduce_zero_label=True, label_map=label_map, seg_fields=[])  # noqa
        ours = LoadAnnotationsChecked(NUM_CLASSES)(results())['gt_seg_map']
        mmseg = LoadAnnotations()(results())['gt_seg_map']
        np.testing.assert_array_equal(ours, mmseg)


def one_line_error(call, match: str) -> str:
    with pytest.raises(ValueError, match=match) as error:
        call()
    message = str(error.value)
    assert '\n' not in message
    return message


def test_detectron2_maps_read_as_ade20k_are_refused_naming_the_file(both_formats):
    root, _ = both_formats
    first = osp.join(str(root), 'annotations_detectron2', 'validation', 'ADE_val_00000000.png')
    message = one_line_error(lambda: build(root, 'annotations_detectron2', label_format='ade20k'), 'label values')
    assert message.startswith(first) and "label_format='detectron2'" in message and '[255]' in message
    # per map too, when the dataset-level check is off
    dataset = build(root, 'annotations_detectron2', label_format='ade20k', check_label_maps=0)
    last = osp.join(str(root), 'annotations_detectron2', 'validation', 'ADE_val_00000002.png')
    assert one_line_error(lambda: dataset[2], 'label values').startswith(last)


def test_ade20k_maps_with_the_last_class_read_as_detectron2_are_refused(both_formats):
    root, _ = both_formats
    dataset = build(root, 'annotations', label_format='detectron2', check_label_maps=0)
    path = osp.join(str(root), 'annotations', 'validation', 'ADE_val_00000000.png')
    message = one_line_error(lambda: dataset[0], 'label values')
    assert message.startswith(path) and '[150]' in message and "label_format='ade20k'" in message


def test_ade20k_maps_without_the_last_class_read_as_detectron2_are_refused_by_the_dataset(tmp_path):
    """Each map fits both value ranges; no map holding 255 gives the format away."""
    truths = [ground_truth(seed, with_flag=False) for seed in range(3)]
    write_set(tmp_path, truths, ade20k_style, 'annotations')
    message = one_line_error(lambda: build(tmp_path, 'annotations', label_format='detectron2'), 'none of the first 3')
    assert message.startswith(osp.join(str(tmp_path), 'annotations', 'validation'))
    # the escape hatch for fully labelled detectron2 maps, which are valid data
    full = [ground_truth(seed, with_unlabelled=False) for seed in range(2)]
    write_set(tmp_path / 'full', full, detectron2_style, 'annotations_detectron2')
    with pytest.raises(ValueError, match='none of the first 2'):
        build(tmp_path / 'full', 'annotations_detectron2', label_format='detectron2')
    dataset = build(tmp_path / 'full', 'annotations_detectron2', label_format='detectron2', check_label_maps=0)
    np.testing.assert_array_equal(loaded(dataset, 1), expected_labels(full[1]))


def test_values_outside_both_formats_are_refused(tmp_path):
    truth = ground_truth(3)
    labels = detectron2_style(truth)
    labels[0, 0] = 200
    write_set(tmp_path, [truth], lambda _: labels, 'annotations_detectron2')
    one_line_error(lambda: build(tmp_path, 'annotations_detectron2', label_format='detectron2'), r'\[200\]')


def test_missing_label_map_is_named(tmp_path):
    write_set(tmp_path, [ground_truth(0)], ade20k_style, 'annotations')
    (tmp_path / 'annotations' / 'validation' / 'ADE_val_00000000.png').unlink()
    with pytest.raises(FileNotFoundError, match='ADE_val_00000000.png: label map not found'):
        build(tmp_path, 'annotations')


def test_bad_arguments_are_refused(both_formats):
    root, _ = both_formats
    one_line_error(lambda: build(root, 'annotations', label_format='coco'), 'label_format must be one of')
    one_line_error(lambda: build(root, 'annotations', label_format='detectron2', reduce_zero_label=True), 'contradicts')
    with pytest.raises(ValueError, match='num_classes must be'):
        LoadAnnotationsChecked(255)


def test_released_layouts_in_the_dataset_configs(both_formats, tmp_path):
    """The configs' dataset dicts: label folder and label_format agree, and reallq.py reads the released layout
    through its own test pipeline (mmseg's ADE20K one, whose LoadAnnotations fixes reduce_zero_label=True)."""
    sets = Config.fromfile(repo_path('configs', '_base_', 'datasets', 'lq_test_sets.py'))
    names = [key for key in sets if key.endswith('_dataset')]
    assert {'ade20k_lq_dataset', 'reallq_dataset', 'reallq_ade20k_labels_dataset',
            'ade20k_lq_detectron2_labels_dataset', 'ade20k_lq_generated_dataset'} <= set(names)
    for name in names:
        dataset = sets[name]
        assert dataset.type == 'ADE20KFormatDataset'
        detectron2_labels = 'annotations_detectron2' in dataset.data_prefix.seg_map_path
        assert dataset.label_format == ('detectron2' if detectron2_labels else 'ade20k'), name
    assert sets.reallq_dataset.label_format == 'detectron2' and sets.ade20k_lq_dataset.img_suffix == '.jpg'

    cfg = Config.fromfile(repo_path('configs', '_base_', 'datasets', 'reallq.py')).test_dataloader.dataset
    root = tmp_path / 'RealLQ'
    truth = ground_truth(11, shape=(128, 256))
    write_set(root / 'ADEChallengeData2016', [truth], detectron2_style, 'annotations_detectron2')
    cfg.data_root = str(root)
    dataset = DATASETS.build(cfg)
    sample = dataset[0]
    assert tuple(sample['inputs'].shape[-2:]) == (512, 1024)  # Resize(scale=(2048, 512)) ran on the image
    # the labels are loaded after the Resize, at the original size, as mmseg scores them
    np.testing.assert_array_equal(sample['data_samples'].gt_sem_seg.data[0].numpy(), expected_labels(truth))
