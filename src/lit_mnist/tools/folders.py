"""An IDX dataset of the MNIST family written out as folders of PNG files, one folder per class:
the layout `lit_mnist.data.ImageFolderDataModule` reads.

    lit-mnist folders OUT [--data.data_dir=data] [--dataset MNIST] [--limit N]

Writes OUT/train/<class>/<index>.png and OUT/test/<class>/<index>.png, where <index> is the
image's place in its IDX file (zero-padded, so a class folder lists in the file's order). A "/" in
a class name (Fashion-MNIST's "T-shirt/top") becomes "_". OUT must be new or empty: files of
another dataset left in it would become part of this one. Then train on it with

    lit-mnist fit --config configs/default.yaml --data=lit_mnist.data.ImageFolderDataModule --data.root=OUT
"""

from pathlib import Path

from lit_mnist.tools import add_data_dir, fail, parser_for


def folder_name(class_name: str) -> str:
    return class_name.replace("/", "_")


def write_folders(out: Path, data_dir: str, dataset: str = "MNIST", limit: int | None = None) -> int:
    """Writes the folders; the number of images written."""
    from PIL import Image

    from lit_mnist.data import CLASSES, load_split

    written = 0
    for split in ("train", "test"):
        images, labels = load_split(data_dir, split, dataset)
        images, labels = images[:limit].numpy(), labels[:limit].tolist()
        digits = len(str(max(len(labels) - 1, 0)))
        # only the classes present: an empty class folder is an error to the datamodule
        for label in set(labels):
            (out / split / folder_name(CLASSES[dataset][label])).mkdir(parents=True, exist_ok=True)
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            path = out / split / folder_name(CLASSES[dataset][label]) / f"{index:0{digits}d}.png"
            Image.fromarray(image, mode="L").save(path)
        written += len(labels)
    return written


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from lit_mnist.data import CLASSES, DataError, missing_files, raw_folder

    parser = parser_for(prog, __doc__)
    parser.add_argument("out", type=Path, help="the folder to write (new or empty)")
    add_data_dir(parser)
    parser.add_argument("--dataset", default="MNIST", choices=sorted(CLASSES), help="(default: MNIST)")
    parser.add_argument("--limit", type=int, help="write only the first N images of each split")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        fail(f"--limit must be at least 1, got {args.limit}")
    if missing := missing_files(args.data_dir, args.dataset):
        folder = raw_folder(args.data_dir, args.dataset)
        fail(f"{folder} lacks {', '.join(missing)}: set --data.data_dir to the folder that holds it")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        fail(f"{args.out} exists and is not an empty folder: name a new one")
    try:
        written = write_folders(args.out, args.data_dir, args.dataset, args.limit)
    except DataError as err:
        fail(str(err))
    print(f"wrote {written} images into {args.out}/train and {args.out}/test")


if __name__ == "__main__":
    main()
