from . import adapters, backbones, data_preprocessors, heads, losses, necks, prompts, segmentors, utils  # noqa: F401
