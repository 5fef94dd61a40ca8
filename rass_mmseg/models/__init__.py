from . import adapters, backbones, data_preprocessors, heads, losses, necks, prompts, segmentors, taggers, utils  # noqa: F401
