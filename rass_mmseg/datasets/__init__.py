from .texture_dataset import TextureSegDataset
from .texture_generator import CLASSES as TEXTURE_CLASSES
from .texture_generator import generate_texture_dataset

__all__ = ['TextureSegDataset', 'TEXTURE_CLASSES', 'generate_texture_dataset']
