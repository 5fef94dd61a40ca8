import sys

from mmengine.config import Config
from mmseg.registry import MODELS

from tests.conftest import repo_path

sys.path.insert(0, repo_path('tools'))
import benchmark  # noqa: E402

CONFIG = repo_path('configs', 'rass', 'rass_tiny-segformer_textures-128x128.py')
M2F_CONFIG = repo_path('configs', 'rass', 'rass_tiny-mask2former_textures-128x128.py')


def independent_counts(config: str) -> tuple:
    """Parameters of the backbone, neck and head built on their own from the config."""
    cfg = Config.fromfile(config).model
    parts = [MODELS.build(cfg[key]) for key in ('backbone', 'neck', 'decode_head')]
    total = sum(p.numel() for part in parts for p in part.parameters())
    trainable = sum(p.numel() for part in parts for p in part.parameters() if p.requires_grad)
    return total, trainable


def test_benchmark_prints_the_fields_and_counts_match(capsys):
    results = benchmark.main([CONFIG, '--compare', M2F_CONFIG, '--shape', '64', '64', '--num-images', '2',
                              '--warmup', '1', '--rounds', '1', '--device', 'cpu'])
    out = capsys.readouterr().out
    for field in ('params', 'trainable', 'FPS', 'ms/img', 'peak MB', 'FPS ratio (first / second)'):
        assert field in out
    assert len(results) == 2
    for result, config in zip(results, (CONFIG, M2F_CONFIG)):
        assert (result['total'], result['trainable']) == independent_counts(config)
        assert result['fps'] > 0 and result['peak_memory_mb'] > 0
    ratio = float(out.strip().splitlines()[-1].split(':')[-1])
    assert abs(ratio - results[0]['fps'] / results[1]['fps']) < 1e-3
