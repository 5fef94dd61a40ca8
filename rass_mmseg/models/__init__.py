from . import backbones, data_preprocessors, heads, losses, necks, prompt_sources, segmentors, utils  # noqa: F401
