"""Ragged-batch blur: each image reflected at its own border."""
import torch
import torch.nn.functional as F

from rass_mmseg.degradations.blur import blur_ragged


def test_blur_reflects_at_each_image_border():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 30, 40)
    canvas = torch.zeros(2, 3, 50, 50)
    canvas[:, :, :30, :40] = images
    kernels = torch.rand(2, 21, 21)
    kernels /= kernels.sum((1, 2), keepdim=True)
    blurred = blur_ragged(canvas, torch.tensor([[30, 40], [30, 40]]), kernels)
    padded = F.pad(images, (10, 10, 10, 10), mode='reflect')
    expected = torch.stack([F.conv2d(padded[i:i + 1], kernels[i].expand(3, 1, 21, 21), groups=3)[0] for i in range(2)])
    torch.testing.assert_close(blurred[:, :, :30, :40], expected, atol=1e-5, rtol=0)
