import pytest
import torch

from rass_mmseg.models.necks import FeatureProjection

SD21_CHANNELS = [256, 512, 1280, 1280, 640, 320]
SD21_STRIDES = [4, 8, 32, 16, 8, 8]


def features_for(channels, strides, height=64, width=96, batch=2):
    return [torch.randn(batch, c, -(-height // s), -(-width // s)) for c, s in zip(channels, strides)]


def test_sd21_layout_gives_res2_to_res5():
    neck = FeatureProjection(SD21_CHANNELS, SD21_STRIDES, out_channels=32, bottleneck_channels=16,
                             norm_cfg=dict(type='GN', num_groups=8))
    outputs = neck(features_for(SD21_CHANNELS, SD21_STRIDES, height=70, width=96))
    assert [tuple(o.shape) for o in outputs] == [(2, 32, 18, 24), (2, 32, 9, 12), (2, 32, 5, 6), (2, 32, 3, 3)]
    assert neck.groups == {4: [0], 8: [1, 4, 5], 16: [3], 32: [2]}


def test_levels_are_sums_of_projected_features():
    neck = FeatureProjection([8, 8, 4], [4, 8, 8], out_strides=[4, 8], out_channels=8, bottleneck_channels=4,
                             norm_cfg=dict(type='GN', num_groups=2)).eval()
    feats = features_for([8, 8, 4], [4, 8, 8], height=32, width=32)
    res2, res3 = neck(feats)
    torch.testing.assert_close(res2, neck.blocks[0](feats[0]))
    torch.testing.assert_close(res3, neck.blocks[1](feats[1]) + neck.blocks[2](feats[2]))
    # identity shortcut when channels already match, projected otherwise
    assert neck.blocks[0].shortcut is None and neck.blocks[2].shortcut is not None


def test_bad_configs_and_inputs():
    with pytest.raises(ValueError, match='in_channels has 2 entries but in_strides has 3'):
        FeatureProjection([8, 8], [4, 8, 16])
    with pytest.raises(ValueError, match=r'outputs with no input: \[32\]'):
        FeatureProjection([8, 8, 8], [4, 8, 16], out_strides=[4, 8, 16, 32], norm_cfg=dict(type='GN', num_groups=2))
    neck = FeatureProjection([8, 8], [4, 8], out_strides=[4, 8], out_channels=8, bottleneck_channels=4,
                             norm_cfg=dict(type='GN', num_groups=2))
    with pytest.raises(ValueError, match=r'feature 1 has 6 channels, in_channels\[1\] is 8'):
        neck(features_for([8, 6], [4, 8]))
    with pytest.raises(ValueError, match='expects 2 features, got 1'):
        neck(features_for([8], [4]))
