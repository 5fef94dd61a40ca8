from .load_annotations_checked import LoadAnnotationsChecked
from .load_image_checked import LoadImageFromFileChecked

__all__ = ['LoadAnnotationsChecked', 'LoadImageFromFileChecked']
