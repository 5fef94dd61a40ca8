"""The batched JPEG codec: quality ordering, agreement with libjpeg, per-sample qualities."""
import cv2
import numpy as np
import torch

from rass_mmseg.degradations.jpeg import jpeg_ragged
from tests.test_degradations.helpers import photo


def test_jpeg_changes_the_image_more_at_lower_quality_and_matches_libjpeg():
    image = photo(128)
    batch = image.expand(3, -1, -1, -1)
    sizes = torch.tensor([[128, 128]] * 3)
    coded = jpeg_ragged(batch, sizes, torch.tensor([20.0, 50.0, 90.0]))
    errors = (coded - batch).abs().mean(dim=(1, 2, 3))
    assert errors[2] > 0.5 / 255  # the output differs from the input
    assert errors[0] > errors[1] > errors[2]
    # Close to a real encoder: OpenCV's libjpeg at quality 50.
    rgb8 = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    _, encoded = cv2.imencode('.jpg', rgb8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])
    reference = torch.from_numpy(cv2.imdecode(encoded, 1)[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    assert (coded[1] - reference).abs().mean() < 1.5 / 255
    # Each sample is coded with its own quality: the batch equals separate calls.
    torch.testing.assert_close(coded[0:1], jpeg_ragged(image, sizes[:1], torch.tensor([20.0])), atol=1e-6, rtol=0)
