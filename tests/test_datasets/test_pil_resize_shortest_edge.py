"""``PILResizeShortestEdge``: detectron2's test-time resize (its size arithmetic, PIL's antialiased bilinear)."""
import mmcv
import numpy as np
import pytest
from PIL import Image

from rass_mmseg.datasets.transforms import PILResizeShortestEdge


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((height // 4 + 1, width // 4 + 1, channels))
    coarse = np.kron(noise, np.ones((4, 4, 1)))[:height, :width]
    return (coarse * 255).round().astype(np.uint8)


@pytest.mark.parametrize('size, expected', [
    ((480, 640), (512, 683)),  # 640 * 512 / 480 = 682.67: ADE20K's 4:3 images
    ((640, 480), (683, 512)),
    ((512, 512), (512, 512)),
    ((400, 401), (512, 513)),  # 513.28
    ((100, 500), (410, 2048)),  # 2560 > 2048: both sides x 0.8, 409.6 -> 410
    ((1000, 100), (2048, 205)),  # 5120 > 2048: x 0.4, 204.8 -> 205
])
def test_output_size_is_detectron2s(size, expected):
    height, width = size
    results = PILResizeShortestEdge(512, 2048)(dict(img=np.zeros((height, width, 3), np.uint8)))
    assert results['img'].shape[:2] == expected and results['img_shape'] == expected
    assert results['scale_factor'] == (expected[1] / width, expected[0] / height) and results['keep_ratio']


def test_pixels_are_pils_bilinear_resize_not_opencvs():
    image = smooth_image(61, 90)
    label = (smooth_image(61, 90, 1, seed=1)[..., 0] // 2).astype(np.uint8)
    results = PILResizeShortestEdge(40, 2048)(dict(img=image, gt_seg_map=label, seg_fields=['gt_seg_map']))
    # 90 * 40 / 61 = 59.02 -> 59; PIL's own resize of the same array (PIL filters when it shrinks)
    expected = np.asarray(Image.fromarray(image).resize((59, 40), Image.BILINEAR))
    np.testing.assert_array_equal(results['img'], expected)
    np.testing.assert_array_equal(results['gt_seg_map'], np.asarray(Image.fromarray(label).resize((59, 40),
                                                                                                   Image.NEAREST)))
    opencv = mmcv.imresize(image, (59, 40))  # mmseg's Resize: OpenCV bilinear, unfiltered
    assert np.abs(opencv.astype(int) - results['img']).max() > 2
    gray = PILResizeShortestEdge(40, 2048)(dict(img=image[..., 0].copy()))['img']
    np.testing.assert_array_equal(gray, expected[..., 0])
    single = PILResizeShortestEdge(40, 2048)(dict(img=image[..., :1].copy()))['img']
    assert single.shape == (40, 59, 1)
    np.testing.assert_array_equal(single[..., 0], expected[..., 0])


def test_bad_inputs_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r'a.jpg must be a uint8 .* got a float32 array of shape \(4, 4, 3\)') as error:
        PILResizeShortestEdge()(dict(img=np.zeros((4, 4, 3), np.float32), img_path='a.jpg'))
    assert '\n' not in str(error.value)
    with pytest.raises(ValueError, match='short_edge_length must be a positive int, got 0'):
        PILResizeShortestEdge(0)
    with pytest.raises(ValueError, match="interpolation must be one of .* got 'lanczos'"):
        PILResizeShortestEdge(interpolation='lanczos')
