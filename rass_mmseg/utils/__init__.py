"""The importable logic of the command-line tools: running mmseg's packaged tools (:mod:`.mmseg_tools`), building
a model without its weights (:mod:`.without_weights`), benchmarking segmentors (:mod:`.model_benchmark`),
listing the images of a file or folder (:mod:`.image_files`)."""
from .image_files import IMAGE_SUFFIXES, list_images
from .mmseg_tools import MMSEG_TOOLS, run_mmseg_tool
from .without_weights import SD21_ARCHITECTURE_KEYS, model_without_weights

__all__ = ['IMAGE_SUFFIXES', 'MMSEG_TOOLS', 'SD21_ARCHITECTURE_KEYS', 'list_images', 'model_without_weights',
           'run_mmseg_tool']
