from .load_annotations_checked import LoadAnnotationsChecked
from .load_image_checked import LoadImageFromFileChecked
from .pil_resize_shortest_edge import PILResizeShortestEdge

__all__ = ['LoadAnnotationsChecked', 'LoadImageFromFileChecked', 'PILResizeShortestEdge']
