"""A visualizer that writes input | prediction | ground truth side by side (segmentation or restoration)."""
from typing import Optional

import mmcv
import numpy as np
from mmseg.registry import VISUALIZERS
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

__all__ = ['SideBySideSegVisualizer']


@VISUALIZERS.register_module()
class SideBySideSegVisualizer(SegLocalVisualizer):
    """mmseg's ``SegLocalVisualizer`` laid out as three panels: input, prediction, ground truth.

    The input panel is the low-quality image the model saw: ``data_sample.lq_img`` (a ``PixelData`` of an
    RGB uint8 image, C x H x W) when a component stored one (e.g. on-the-fly degradation), else the image
    read from disk (an LQ benchmark such as ADE20K-LQ is LQ on disk). Prediction and ground truth are drawn
    over that input with the dataset palette. mmseg's ``tools/test.py --show-dir`` uses it when a config
    sets ``visualizer.type='SideBySideSegVisualizer'``.

    For a restorer (the data sample holds ``restored_img``, e.g. from SCR) the panels are LQ input | restored
    | clean image (``gt_hq_img`` when present, else the image read from disk). For restore-then-segment (both
    ``restored_img`` and ``pred_sem_seg``): LQ | restored | prediction | ground truth, masks drawn over the
    restored image.
    """

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Optional[SegDataSample] = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       step: int = 0,
                       with_labels: Optional[bool] = True) -> None:
        """Draw the panels and save them to ``out_file`` or the visualizer's backends.

        Args:
            name: Image identifier.
            image: RGB image read from disk, H x W x 3 uint8.
            data_sample: Holds ``pred_sem_seg``, ``gt_sem_seg`` and optionally ``lq_img``.
            draw_gt: Draw the ground-truth panel.
            draw_pred: Draw the prediction panel.
            show: Show in a window instead of saving.
            wait_time: Seconds the window stays open.
            out_file: File to write (RGB panels saved as BGR, as mmseg does).
            step: Global step for the backends.
            with_labels: Write class names on the masks.
        """
        restoration = data_sample is not None and 'restored_img' in data_sample
        segmentation = data_sample is not None and ('pred_sem_seg' in data_sample or 'gt_sem_seg' in data_sample)
        if restoration and not (segmentation and 'pred_sem_seg' in data_sample):
            self._output(self._restoration_panels(image, data_sample), name, show, wait_time, out_file, step)
            return
        restored_panel = None
        if restoration:  # restore-then-segment: LQ | restored | masks drawn over the restored image
            shape = data_sample.metainfo.get('img_shape', data_sample.restored_img.shape)
            restored_panel = self._to_uint8(data_sample.restored_img, shape, image.shape[:2])
        if data_sample is not None and 'lq_img' in data_sample:
            # the test pipeline may have resized the image: back to the file's size
            image = self._to_uint8(data_sample.lq_img, data_sample.lq_img.shape, image.shape[:2])
        panels = [image]
        if restored_panel is not None:
            panels.append(restored_panel)
            image = restored_panel
        classes = self.dataset_meta.get('classes')
        palette = self.dataset_meta.get('palette')
        for wanted, key in ((draw_pred, 'pred_sem_seg'), (draw_gt, 'gt_sem_seg')):
            if wanted and data_sample is not None and key in data_sample:
                if classes is None:
                    raise ValueError('SideBySideSegVisualizer needs dataset_meta with classes to draw masks')
                panel = self._draw_sem_seg(image.copy(), data_sample.get(key), classes, palette, with_labels)
                panels.append(panel)
        self._output(np.concatenate(panels, axis=1), name, show, wait_time, out_file, step)

    def _output(self, drawn: np.ndarray, name: str, show: bool, wait_time: float, out_file: Optional[str],
                step: int) -> None:
        """Show, write (RGB saved as BGR, as mmseg does) or hand the drawing to the backends."""
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)

    @staticmethod
    def _to_uint8(pixels, shape, image_hw) -> np.ndarray:
        """(C, H, W) tensor (float in [0, 1] or uint8), cropped to ``shape`` and resized to ``image_hw``."""
        data = pixels.data.detach().cpu()
        if data.is_floating_point():
            data = (data.clamp(0, 1) * 255).round()
        array = data[:, :shape[0], :shape[1]].permute(1, 2, 0).numpy().astype(np.uint8)
        if array.shape[:2] != tuple(image_hw):
            array = mmcv.imresize(array, (image_hw[1], image_hw[0]), interpolation='bilinear')
        return array

    def _restoration_panels(self, image: np.ndarray, data_sample: SegDataSample) -> np.ndarray:
        """LQ | restored | HQ for a restorer's data sample."""
        shape = data_sample.metainfo.get('img_shape', data_sample.restored_img.shape)
        image_hw = image.shape[:2]
        lq = self._to_uint8(data_sample.lq_img, shape, image_hw) if 'lq_img' in data_sample else image
        restored = self._to_uint8(data_sample.restored_img, shape, image_hw)
        hq = self._to_uint8(data_sample.gt_hq_img, shape, image_hw) if 'gt_hq_img' in data_sample else image
        return np.concatenate([lq, restored, hq], axis=1)
