"""Write the complete LPIPS state dict (backbone + linear layers) as one safetensors file, offline.

    python tools/model_converters/convert_lpips_weights.py vgg16-397923af.pth work_dirs/lpips_vgg.safetensors
    python tools/model_converters/convert_lpips_weights.py alexnet-owt-7be5be79.pth lpips_alex.safetensors --net alex

The backbone comes from a torchvision ImageNet checkpoint downloaded by hand (``vgg16-397923af.pth``,
``alexnet-owt-7be5be79.pth`` or ``squeezenet1_1-b8a52dc0.pth`` from download.pytorch.org/models), read with
``torch.load(weights_only=True)``; only its ``features.*`` tensors are used, and all of them must fit. The
linear layers default to the LPIPS v0.1 weights that ship inside torchmetrics (``--linear`` takes another
file with ``lin<k>.model.1.weight`` keys, e.g. ``lpips/weights/v0.1/vgg.pth`` of the ``lpips`` package).
The output loads with ``build_lpips(net_type, weights=OUT)``; an existing OUT is never overwritten.
"""
import argparse
import os
import os.path as osp
import re
from typing import Dict, List, Optional

import torch
from safetensors.torch import save_file
from torch import Tensor

from rass_mmseg.models.utils.lpips_network import (
    LPIPS_NET_TYPES,
    LPIPSNetwork,
    build_lpips,
    linear_weights_path,
    lpips_state_dict,
)

# net.slice<k>.<layer>.<param> (vgg, alex) or net.slices.<k>.<layer>.<param> (squeeze) -> features.<layer>.<param>
_BACKBONE_KEY = re.compile(r'^net\.(?:slice\d+|slices\.\d+)\.(.+)$')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write a complete LPIPS state dict as safetensors')
    parser.add_argument('backbone', help='torchvision ImageNet checkpoint of the backbone (e.g. vgg16-397923af.pth)')
    parser.add_argument('out', help='.safetensors file to write (must not exist)')
    parser.add_argument('--net', default='vgg', choices=LPIPS_NET_TYPES, help='LPIPS backbone (default: vgg)')
    parser.add_argument('--linear', default=None, help='linear-layer weights (default: the file shipped in '
                        'torchmetrics for --net)')
    return parser.parse_args(argv)


def _load_tensors(path: str, what: str) -> Dict[str, Tensor]:
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} {path} not found')
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f'{what} {path} must hold a flat {{name: tensor}} dict, got {type(state).__name__}')
    return state


def convert_lpips_weights(backbone: str, out: str, net_type: str = 'vgg', linear: Optional[str] = None
                          ) -> Dict[str, Tensor]:
    """Build the complete LPIPS state dict from ``backbone`` and ``linear`` and save it to ``out``.

    Args:
        backbone: torchvision checkpoint of the ``net_type`` backbone (a flat state dict).
        out: ``.safetensors`` file to write; must not exist.
        net_type: One of ``LPIPS_NET_TYPES``.
        linear: File with the ``lin<k>.model.1.weight`` tensors; ``None`` takes the one shipped in torchmetrics.

    Returns:
        The state dict written.
    """
    if osp.exists(out):
        raise FileExistsError(f'{out} exists; refusing to overwrite it (choose another output path)')
    if not out.endswith('.safetensors'):
        raise ValueError(f'{out}: the output must be a .safetensors file')
    linear = linear_weights_path(net_type) if linear is None else linear
    source = _load_tensors(backbone, 'backbone checkpoint')
    lins = _load_tensors(linear, 'LPIPS linear weights')
    with torch.device('meta'):  # names and shapes only: skips the random initialisation of the backbone
        template = lpips_state_dict(LPIPSNetwork(net_type))

    state, problems = {}, []
    for name, like in template.items():
        match = _BACKBONE_KEY.match(name)
        source_name, tensors = (f'features.{match.group(1)}', source) if match else (name, lins)
        value = tensors.get(source_name)
        if value is None or value.shape != like.shape:
            problems.append(f'{source_name} ' + ('missing' if value is None else f'{tuple(value.shape)} != '
                                                                                 f'{tuple(like.shape)}'))
        else:
            state[name] = value.to(torch.float32).contiguous()
    used = {f'features.{_BACKBONE_KEY.match(name).group(1)}' for name in template if _BACKBONE_KEY.match(name)}
    problems += [f'{name} unused' for name in sorted(source) if name.startswith('features.') and name not in used]
    if problems:
        raise ValueError(f'{backbone} + {linear} do not fit LPIPS-{net_type}: {len(problems)} problems, e.g. '
                         f'{problems[:3]} (is --net right?)')

    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    save_file(state, out, metadata=dict(net_type=net_type, backbone=osp.basename(backbone),
                                        linear=osp.basename(linear)))
    build_lpips(net_type, weights=out)  # the file loads strictly
    return state


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    state = convert_lpips_weights(args.backbone, args.out, args.net, args.linear)
    print(f'wrote {args.out}: {len(state)} tensors of LPIPS-{args.net}; use it as lpips weights in a config')


if __name__ == '__main__':
    main()
