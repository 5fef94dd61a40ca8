"""The importable logic of the command-line tools: running mmseg's packaged tools (:mod:`.mmseg_tools`), building
a model without its weights (:mod:`.without_weights`), benchmarking segmentors (:mod:`.model_benchmark`)."""
from .mmseg_tools import MMSEG_TOOLS, run_mmseg_tool
from .without_weights import SD21_ARCHITECTURE_KEYS, model_without_weights

__all__ = ['MMSEG_TOOLS', 'SD21_ARCHITECTURE_KEYS', 'model_without_weights', 'run_mmseg_tool']
