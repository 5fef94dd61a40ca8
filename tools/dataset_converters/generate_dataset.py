"""Generate the embedded texture segmentation dataset (8 texture classes, mmseg folder layout).

    python tools/dataset_converters/generate_dataset.py data/textures --seed 0

Defaults: seed 0, 80 training and 20 validation images of 128x128 pixels; the same arguments give
byte-identical files. An existing folder holding the same dataset is reused; any other non-empty
folder is refused.
"""
import argparse
import sys

from rass_mmseg.datasets.texture_generator import generate_texture_dataset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the embedded texture segmentation dataset',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('out_dir', nargs='?', default='data/textures', help='folder to create')
    parser.add_argument('--seed', type=int, default=0, help='seed of every random choice')
    parser.add_argument('--num-train', type=int, default=80, help='number of training images')
    parser.add_argument('--num-val', type=int, default=20, help='number of validation images')
    parser.add_argument('--image-size', type=int, default=128, help='side of the square images')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        meta = generate_texture_dataset(
            args.out_dir, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
            image_size=args.image_size)
    except (FileExistsError, NotADirectoryError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'texture dataset in {args.out_dir} (seed {meta["params"]["seed"]}, '
          f'{meta["params"]["image_size"]}x{meta["params"]["image_size"]} px)')
    splits = list(meta['counts'])
    print(f'{"class":<8}' + ''.join(f'{s + " px %":>10}{s + " regions":>14}' for s in splits))
    for name in meta['classes']:
        row = ''.join(f'{100 * meta["class_pixel_fractions"][s][name]:>10.1f}{meta["regions"][s][name]:>14d}'
                      for s in splits)
        print(f'{name:<8}' + row)
    print('images: ' + ', '.join(f'{s} {n}' for s, n in meta['counts'].items()))


if __name__ == '__main__':
    main()
