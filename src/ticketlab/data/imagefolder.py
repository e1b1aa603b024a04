"""Image-folder data sets: train/<class>/* and test/<class>/* images, in a folder or tar archive.

An archive may wrap the tree in one top-level folder. Classes are the sorted names of the
train/ class folders. All images are decoded once (PIL) into uint8 arrays, cached as .npz
beside the source and keyed by its size and mtime (for a folder: of every file in it).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from ticketlab.data.cache import file_key, load_arrays, save_arrays
from ticketlab.data.files import DataFile, verify
from ticketlab.data.paths import derived_path
from ticketlab.data.prepare import RawData
from ticketlab.data.sources import DatasetSource, register
from ticketlab.errors import DataError

_SPLITS = ("train", "test")


def read_imagefolder(source: Path) -> RawData:
    """Decoded images of the tree at `source`, from the cache when it is up to date.

    No normalisation constants: they are computed per channel from the training set.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(
            f"{source} does not exist; expected a folder or .tar/.tar.gz with train/<class>/ and test/<class>/"
        )
    key = _source_key(source)
    cache = derived_path(source, ".cache.npz")
    arrays = load_arrays(cache, key)
    if arrays is None:
        arrays = _decode(source)
        save_arrays(cache, key, arrays)
    return RawData(
        train_x=arrays["train_x"],
        train_y=arrays["train_y"],
        test_x=arrays["test_x"],
        test_y=arrays["test_y"],
        num_classes=len(arrays["classes"]),
    )


def _source_key(source: Path) -> str:
    if not source.is_dir():
        return file_key(source)
    listing = hashlib.sha256()
    for root, _, names in sorted(os.walk(source)):
        for name in sorted(names):
            path = Path(root, name)
            listing.update(f"{path.relative_to(source)}\0{file_key(path)}\n".encode())
    return listing.hexdigest()


def _members(source: Path, wanted: Callable[[PurePosixPath], bool]) -> Iterator[tuple[PurePosixPath, bytes]]:
    """(relative path, contents) of the files in the folder or archive that are `wanted`."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            name = PurePosixPath(path.relative_to(source).as_posix())
            if path.is_file() and wanted(name):
                yield name, path.read_bytes()
    elif tarfile.is_tarfile(source):
        try:
            with tarfile.open(source, "r:*") as tar:
                for member in tar:  # streamed: each member is read before moving on
                    if member.isfile() and wanted(PurePosixPath(member.name)):
                        yield PurePosixPath(member.name), tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise DataError(f"{source} is a damaged archive ({err}); replace it with a good copy") from None
    else:
        raise DataError(f"{source} is neither a folder nor a tar archive")


def _decode(source: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    formats = Image.registered_extensions()  # ".jpg" -> "JPEG": opening with the right plugin is faster

    def is_image_in_tree(path: PurePosixPath) -> bool:
        return (
            path.suffix.lower() in formats
            and len(path.parts) in (3, 4)
            and path.parts[-3] in _SPLITS
            and not path.name.startswith(".")
        )

    images: dict[tuple[str, ...], np.ndarray] = {}  # (wrapper..., split, class, file) -> image
    for path, data in _members(source, is_image_in_tree):
        images[path.parts] = _decode_image(data, formats[path.suffix.lower()], f"{source}/{path}")

    wrappers = {parts[:-3] for parts in images}
    if len(wrappers) > 1:
        raise DataError(f"{source} holds several train/test trees ({sorted('/'.join(w) or '.' for w in wrappers)})")
    by_split = {split: sorted(parts[-3:] for parts in images if parts[-3] == split) for split in _SPLITS}
    for split, found in by_split.items():
        if not found:
            raise DataError(f"{source} has no images under {split}/<class>/")
    classes = sorted({cls for _, cls, _ in by_split["train"]})
    unknown = sorted({cls for _, cls, _ in by_split["test"]} - set(classes))
    if unknown:
        raise DataError(f"{source}: test classes {unknown} have no train/ folder")

    prefix = next(iter(wrappers))
    label = {cls: i for i, cls in enumerate(classes)}
    arrays = {"classes": np.array(classes)}
    stacked = _stack([images[prefix + parts] for parts in by_split["train"] + by_split["test"]], source)
    n_train = len(by_split["train"])
    arrays["train_x"], arrays["test_x"] = stacked[:n_train], stacked[n_train:]
    for split in _SPLITS:
        arrays[f"{split}_y"] = np.array([label[cls] for _, cls, _ in by_split[split]], dtype=np.int64)
    return arrays


def _decode_image(data: bytes, image_format: str, name: str) -> np.ndarray:
    """(H, W) for grey images, (H, W, 3) for everything else (converted to RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            return np.asarray(image.convert("L" if image.mode in ("1", "L") else "RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DataError(f"{name} is not a readable {image_format} image ({err})") from None


def _stack(images: list[np.ndarray], source: Path) -> np.ndarray:
    """One (N, C, H, W) uint8 array; grey images become RGB if any image is in colour."""
    if any(image.ndim == 3 for image in images):
        images = [np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image for image in images]
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise DataError(f"{source}: images differ in size ({sorted(shapes)[:3]}...); resize them to one size")
    x = np.stack(images)
    return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _read_user_path(folder: Path, path: Path | None) -> RawData:
    return read_imagefolder(path)


CIFAR10_JPEG = DataFile("cifar10-jpeg", "cifar10-jpeg.tar.gz")


def _read_cifar10_jpeg(folder: Path, path: Path | None) -> RawData:
    archive = folder / CIFAR10_JPEG.name
    verify(CIFAR10_JPEG, archive)
    return read_imagefolder(archive)


register(
    DatasetSource(
        "imagefolder",
        "your own images: train/<class>/* and test/<class>/* as a folder or .tar/.tar.gz (path=...)",
        _read_user_path,
        needs_path=True,
    )
)
register(
    DatasetSource(
        "cifar10-jpeg",
        "CIFAR-10 stand-in, NOT the exact CIFAR-10: its 50k train / 10k test images re-encoded "
        "as 32x32 JPEGs (pixels differ a little); say so next to any number measured on it",
        _read_cifar10_jpeg,
        (CIFAR10_JPEG,),
    )
)
