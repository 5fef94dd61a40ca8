from .texture_dataset import TextureSegDataset
from .texture_generator import CLASSES as TEXTURE_CLASSES
from .texture_generator import generate_texture_dataset
from .transforms import LoadImageFromFileChecked

__all__ = ['LoadImageFromFileChecked', 'TextureSegDataset', 'TEXTURE_CLASSES', 'generate_texture_dataset']
