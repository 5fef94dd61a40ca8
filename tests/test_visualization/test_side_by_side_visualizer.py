import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from rass_mmseg.visualization import SideBySideSegVisualizer


def make_sample(height=24, width=32, lq=None):
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, height, width, dtype=torch.long))
    pred = torch.ones(1, height, width, dtype=torch.long)
    sample.pred_sem_seg = PixelData(data=pred)
    if lq is not None:
        sample.lq_img = PixelData(data=lq)
    return sample


@pytest.mark.parametrize('lq_size', [None, (24, 32), (12, 16)])
def test_panels_are_input_prediction_ground_truth(tmp_path, lq_size):
    visualizer = SideBySideSegVisualizer(name=f'vis_{lq_size}', save_dir=str(tmp_path))
    visualizer.dataset_meta = dict(classes=('zero', 'one'), palette=[[255, 0, 0], [0, 0, 255]])
    disk = np.full((24, 32, 3), 200, dtype=np.uint8)
    lq = None if lq_size is None else torch.full((3, *lq_size), 50, dtype=torch.uint8)
    out_file = str(tmp_path / 'out.png')
    visualizer.add_datasample('x', disk, make_sample(lq=lq), out_file=out_file, with_labels=False)
    drawn = cv2.imread(out_file)[..., ::-1]  # back to RGB
    assert drawn.shape == (24, 96, 3)
    expected_input = 200 if lq is None else 50
    assert (drawn[:, :32] == expected_input).all()
    assert drawn[12, 40, 2] > drawn[12, 40, 0]  # prediction = class 'one' (blue) over the input
    assert drawn[12, 72, 0] > drawn[12, 72, 2]  # ground truth = class 'zero' (red)


def test_missing_classes_is_a_clear_error(tmp_path):
    visualizer = SideBySideSegVisualizer(name='vis_no_meta', save_dir=str(tmp_path))
    visualizer.dataset_meta = {}
    with pytest.raises(ValueError, match='dataset_meta with classes'):
        visualizer.add_datasample('x', np.zeros((24, 32, 3), np.uint8), make_sample(), out_file=str(tmp_path / 'o.png'))


def test_restorer_panels_are_lq_restored_hq(tmp_path):
    visualizer = SideBySideSegVisualizer(name='vis_restore', save_dir=str(tmp_path))
    sample = SegDataSample()
    sample.set_metainfo(dict(img_shape=(24, 32)))
    sample.lq_img = PixelData(data=torch.full((3, 24, 32), 10, dtype=torch.uint8))
    sample.restored_img = PixelData(data=torch.full((3, 32, 64), 0.5))  # padded: cropped to img_shape
    sample.gt_hq_img = PixelData(data=torch.full((3, 32, 64), 1.0))
    out_file = str(tmp_path / 'restore.png')
    visualizer.add_datasample('r', np.zeros((24, 32, 3), np.uint8), sample, out_file=out_file)
    drawn = cv2.imread(out_file)
    assert drawn.shape == (24, 96, 3)
    assert (drawn[:, :32] == 10).all() and (drawn[:, 32:64] == 128).all() and (drawn[:, 64:] == 255).all()


def test_restore_then_segment_panels_draw_masks_over_the_restored_image(tmp_path):
    visualizer = SideBySideSegVisualizer(name='vis_r2s', save_dir=str(tmp_path))
    visualizer.dataset_meta = dict(classes=('zero', 'one'), palette=[[255, 0, 0], [0, 0, 255]])
    sample = make_sample(lq=torch.full((3, 24, 32), 50, dtype=torch.uint8))
    sample.set_metainfo(dict(img_shape=(24, 32)))
    sample.restored_img = PixelData(data=torch.full((3, 24, 32), 0.8))
    out_file = str(tmp_path / 'r2s.png')
    visualizer.add_datasample('x', np.full((24, 32, 3), 200, np.uint8), sample, out_file=out_file,
                              with_labels=False)
    drawn = cv2.imread(out_file)[..., ::-1]
    assert drawn.shape == (24, 128, 3)
    assert (drawn[:, :32] == 50).all() and (drawn[:, 32:64] == 204).all()
    assert drawn[12, 72, 2] > drawn[12, 72, 0] and drawn[12, 104, 0] > drawn[12, 104, 2]
