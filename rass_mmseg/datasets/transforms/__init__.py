from .load_image_checked import LoadImageFromFileChecked

__all__ = ['LoadImageFromFileChecked']
