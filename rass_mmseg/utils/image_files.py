"""The images a command-line entry reads: one file, or the images of a folder (the demos)."""
import os
import os.path as osp
from typing import List

__all__ = ['IMAGE_SUFFIXES', 'list_images']

#: The file endings read as images when a folder is given.
IMAGE_SUFFIXES = ('.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')


def list_images(path: str) -> List[str]:
    """``[path]`` for a file; the images of a folder (name order, no sub-folders) for a folder.

    Raises:
        FileNotFoundError: ``path`` does not exist, or the folder holds no image.
    """
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path}: no such image file or folder')
    images = sorted(osp.join(path, name) for name in os.listdir(path)
                    if name.lower().endswith(IMAGE_SUFFIXES) and osp.isfile(osp.join(path, name)))
    if not images:
        raise FileNotFoundError(f'{path}: no image ({", ".join(IMAGE_SUFFIXES)}) in this folder')
    return images
