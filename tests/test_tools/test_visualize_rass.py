"""tools/analysis_tools/visualize_rass.py's figures of the word attention (the drawing itself runs in
test_run_protocols.py)."""
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from tests.utils import load_tool

visualize = load_tool('analysis_tools/visualize_rass')


def _sample(gt: torch.Tensor) -> SegDataSample:
    return SegDataSample(gt_sem_seg=PixelData(data=gt[None]))


def test_attention_accuracy_reads_the_most_attended_word_as_the_label():
    gt = torch.randint(0, 3, (2, 6, 6))
    gt[0, 0] = 255  # unannotated pixels are not counted
    samples = [_sample(g) for g in gt]
    one_hot = F.one_hot(gt.clamp(max=2), 3).permute(0, 3, 1, 2).float()  # (N, K, H, W), word c where class c is
    maps = torch.cat([one_hot, torch.zeros(2, 1, 6, 6)], 1)  # a fourth phrase beyond the classes is ignored
    assert visualize.attention_accuracy(maps, samples, 3) == 1.0
    assert visualize.attention_accuracy(maps.roll(1, dims=1), samples, 3) == 0.0  # every pixel's word is wrong
    # half right: the first image's maps are right, the second's shifted by one word
    mixed = torch.stack([maps[0], maps[1].roll(1, dims=0)])
    right = int((gt[0] < 3).sum())
    assert visualize.attention_accuracy(mixed, samples, 3) == right / (right + 36)
