"""Ragged-batch resize against F.interpolate, image by image."""
import pytest
import torch
import torch.nn.functional as F

from rass_mmseg.degradations.resize import resize_ragged


@pytest.mark.parametrize('code, mode', [(0, 'area'), (1, 'bilinear'), (2, 'bicubic')])
def test_resize_matches_interpolate_for_each_image_of_a_ragged_batch(code, mode):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 40, 50)
    canvas = torch.rand(2, 3, 64, 64)  # garbage around the images must not leak in
    canvas[:, :, :40, :50] = images
    sizes = torch.tensor([[40, 50], [40, 50]])
    targets = torch.tensor([[17, 61], [52, 23]])
    resized = resize_ragged(canvas, sizes, targets, torch.tensor([code, code]), (60, 70))
    options = {} if mode == 'area' else dict(align_corners=False)
    for index, (height, width) in enumerate(targets.tolist()):
        expected = F.interpolate(images[index:index + 1], size=(height, width), mode=mode, **options)[0]
        torch.testing.assert_close(resized[index, :, :height, :width], expected, atol=1e-5, rtol=0)
