from .ade20k_format_dataset import ADE20KFormatDataset
from .texture_dataset import TextureSegDataset
from .texture_generator import CLASSES as TEXTURE_CLASSES
from .texture_generator import generate_texture_dataset
from .transforms import LoadAnnotationsChecked, LoadImageFromFileChecked

__all__ = ['ADE20KFormatDataset', 'LoadAnnotationsChecked', 'LoadImageFromFileChecked', 'TextureSegDataset',
           'TEXTURE_CLASSES', 'generate_texture_dataset']
