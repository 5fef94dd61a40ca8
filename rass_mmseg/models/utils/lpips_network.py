"""LPIPS, the learned perceptual image patch similarity of Zhang et al., "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric" (CVPR 2018, arXiv 1801.03924), as a frozen network built offline.

The network is torchmetrics' copy of the reference implementation (``richzhang/PerceptualSimilarity``),
built with a randomly initialised torchvision backbone so that nothing is downloaded; real weights come
from one local file holding the complete state dict (backbone and linear layers), which
``tools/model_converters/convert_lpips_weights.py`` writes from a torchvision checkpoint and the linear layers that ship
with torchmetrics. OSEDiff's restoration loss uses the VGG variant (``lpips.LPIPS(net='vgg')``).

File format: a flat ``{name: tensor}`` dict with the key names of the reference implementation,
``net.<slice>.<layer>.<param>`` for the backbone and ``lin<k>.model.1.weight`` for the linear layers
(the ``lins.<k>`` aliases of the same tensors are left out), in a ``.safetensors`` file or a ``.pth`` file
read with ``torch.load(weights_only=True)``.
"""
import os.path as osp
import pickle
import re
from typing import Dict, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

__all__ = ['LPIPS_NET_TYPES', 'LPIPSNetwork', 'build_lpips', 'lpips_state_dict', 'linear_weights_path']

LPIPS_NET_TYPES = ('vgg', 'alex', 'squeeze')
_ALIAS = re.compile(r'^lins\.(\d+)\.')


def _torchmetrics_lpips_module():
    """The torchmetrics module holding ``_LPIPS``: the one place this package touches torchmetrics' privates.

    ``_LPIPS`` is private to torchmetrics (its public LPIPS always asks torchvision for pretrained weights,
    which needs the network); requirements/runtime.txt pins the torchmetrics version it was checked with.
    """
    try:
        from torchmetrics.functional.image import lpips as module
        module._LPIPS  # noqa: B018  (fail here, not later, when the private class moved)
    except (ImportError, AttributeError) as error:
        import torchmetrics
        raise ImportError(f'torchmetrics {torchmetrics.__version__} has no torchmetrics.functional.image.lpips.'
                          f'_LPIPS ({error}); install the version pinned in requirements/runtime.txt') from error
    return module


def linear_weights_path(net_type: str) -> str:
    """Path of the LPIPS linear-layer weights (``lin<k>.model.1.weight``) that ship inside torchmetrics.

    Args:
        net_type: One of ``LPIPS_NET_TYPES``.
    """
    _check_net_type(net_type)
    return osp.join(osp.dirname(_torchmetrics_lpips_module().__file__), 'lpips_models', f'{net_type}.pth')


def _check_net_type(net_type: str) -> None:
    if net_type not in LPIPS_NET_TYPES:
        raise ValueError(f'LPIPS net_type must be one of {LPIPS_NET_TYPES}, got {net_type!r}')


class LPIPSNetwork(nn.Module):
    """A frozen LPIPS network that stays in eval mode (``train()`` is a no-op), so it can sit inside a model.

    Parameters never require gradients, but gradients flow to the input images, as a loss needs. Build it
    with :func:`build_lpips`. A random network (no weights) has a randomly initialised backbone (seeded by
    torch's global generator) and linear layers set to ``1 / channels``, so its distance is, like the real
    one, non-negative and zero for identical images: the mean squared difference of unit-normalised
    features, summed over the layers.

    Args:
        net_type: Backbone, one of ``LPIPS_NET_TYPES``.
    """

    def __init__(self, net_type: str = 'vgg') -> None:
        super().__init__()
        _check_net_type(net_type)
        self.net_type = net_type
        # pretrained=False: no linear weights read; pnet_rand=True: torchvision backbone with weights=None.
        # use_dropout=True keeps the reference key names (lin<k>.model.1.weight); eval mode disables it.
        self.lpips = _torchmetrics_lpips_module()._LPIPS(
            pretrained=False, net=net_type, pnet_rand=True, pnet_tune=False, use_dropout=True, eval_mode=True)
        with torch.no_grad():
            for lin in self.lpips.lins:
                weight = lin.model[-1].weight
                weight.fill_(1.0 / weight.shape[1])
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> 'LPIPSNetwork':
        """Stay in eval mode whatever ``mode`` is (dropout and the frozen backbone never train)."""
        return super().train(False)

    def forward(self, img1: Tensor, img2: Tensor) -> Tensor:
        """Per-sample LPIPS distance.

        Args:
            img1: Images (N, 3, H, W), RGB in [0, 1].
            img2: Images of the same shape.

        Returns:
            Distances, shape (N,).
        """
        if img1.ndim != 4 or img1.shape[1] != 3 or img1.shape != img2.shape:
            raise ValueError(f'LPIPS needs two (N, 3, H, W) batches of equal shape, got {tuple(img1.shape)} '
                             f'and {tuple(img2.shape)}')
        distance = self.lpips(img1, img2, normalize=True)  # normalize: [0, 1] -> [-1, 1]
        return distance.reshape(img1.shape[0])

    def load_weights(self, path: str) -> None:
        """Load a complete state dict (see the module docstring) from ``path``.

        Args:
            path: A ``.safetensors`` file, or a ``.pth``/``.pt`` file of plain tensors.
        """
        state = _read_state_dict(path)
        expected = {name: value.shape for name, value in lpips_state_dict(self).items()}
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f'{path} is not a complete LPIPS-{self.net_type} state dict: missing {len(missing)} '
                             f'keys {missing[:3]}, unexpected {len(unexpected)} keys {unexpected[:3]} '
                             f'(write one with tools/model_converters/convert_lpips_weights.py)')
        wrong = [f'{name} {tuple(state[name].shape)} != {tuple(shape)}' for name, shape in expected.items()
                 if state[name].shape != shape]
        if wrong:
            raise ValueError(f'{path}: {len(wrong)} LPIPS-{self.net_type} tensors have the wrong shape, e.g. '
                             f'{wrong[0]}')
        full = dict(state)
        for name in self.lpips.state_dict():  # the lins.<k> aliases share the lin<k> tensors
            if _ALIAS.match(name):
                full[name] = state[_ALIAS.sub(r'lin\1.', name)]
        self.lpips.load_state_dict(full, strict=True)


def _check_weights_path(path: str) -> None:
    if not osp.isfile(path):
        raise FileNotFoundError(f'LPIPS weights file {path} not found (write it with '
                                'tools/model_converters/convert_lpips_weights.py)')
    if not path.endswith(('.safetensors', '.pth', '.pt')):
        raise ValueError(f'LPIPS weights {path}: expected a .safetensors, .pth or .pt file')


def _read_state_dict(path: str) -> Dict[str, Tensor]:
    """Read a flat tensor dict from a ``.safetensors`` file or, weights-only, from a ``.pth``/``.pt`` file."""
    _check_weights_path(path)
    try:
        if path.endswith('.safetensors'):
            return load_file(path, device='cpu')
        state = torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, SafetensorError, RuntimeError, EOFError, OSError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        unpickler = [line.split('. ')[0] for line in lines if line.startswith('WeightsUnpickler error:')]
        reason = (unpickler or lines or [type(error).__name__])[0]
        reader = 'safetensors' if path.endswith('.safetensors') else 'torch.load(weights_only=True)'
        raise ValueError(f'LPIPS weights {path} could not be read by {reader}: {reason}') from error
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f'LPIPS weights {path} must hold a flat {{name: tensor}} dict, got {type(state).__name__}')
    return state


def lpips_state_dict(network: LPIPSNetwork) -> Dict[str, Tensor]:
    """The complete state dict of ``network`` in the file format of the module docstring (CPU tensors; meta
    tensors for a network built on the meta device, as a template of names and shapes).

    Save it with ``safetensors.torch.save_file`` (the ``lins.<k>`` aliases, which safetensors refuses as shared
    tensors, are left out).

    Args:
        network: A network from :func:`build_lpips`.
    """
    state = {name: value.detach() for name, value in network.lpips.state_dict().items() if not _ALIAS.match(name)}
    return {name: value if value.is_meta else value.cpu().contiguous() for name, value in state.items()}


def build_lpips(net_type: str = 'vgg', weights: Optional[str] = None) -> LPIPSNetwork:
    """Build a frozen, eval-mode LPIPS network without network access.

    Args:
        net_type: Backbone, one of ``LPIPS_NET_TYPES``; ``'vgg'`` as in OSEDiff's loss.
        weights: Local file with the complete state dict (module docstring); ``None`` gives the random network
            of :class:`LPIPSNetwork`, for tests.

    Returns:
        The network; ``network(img1, img2)`` maps two (N, 3, H, W) batches in [0, 1] to (N,) distances.
    """
    if weights is not None:
        _check_weights_path(weights)  # before the (slow) backbone construction
    network = LPIPSNetwork(net_type)
    if weights is not None:
        network.load_weights(weights)
    return network
