"""Property-based tests of the IDX reader, the split loader and the batch collation."""

import gzip
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from conftest import write_idx
from lit_mnist.data import FILES, DataError, GatherBatch, index_batch, load_split, raw_folder, read_idx

# Reproducible in CI (derandomize), no timing flakes on a busy machine (deadline), and no
# .hypothesis/ folder left in the working tree (database).
FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=100)

NAME = "fuzzed-images-idx3-ubyte"

# Small arrays of 1-3 dimensions, some with a 0-length dimension (an empty labels file is valid IDX).
idx_arrays = arrays(np.uint8, array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9))


def idx_bytes(array: np.ndarray) -> bytes:
    """The bytes conftest's `write_idx` (which builds every test dataset) writes for `array`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / NAME
        write_idx(path, torch.from_numpy(array.copy()))
        return path.read_bytes()


def decode(content: bytes) -> tuple[tuple[int, ...], bytes] | None:
    """The shape and the row-major bytes the IDX format says `content` holds, or None where it is
    not a well-formed IDX file of unsigned bytes: an independent reading to hold read_idx against.
    (Not a numpy array: numpy refuses shapes such as (2**32 - 1, 2**32 - 1, 0) that IDX allows.)"""
    if len(content) < 4 or content[:3] != b"\x00\x00\x08" or content[3] == 0:
        return None
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        return None
    dims = struct.unpack(f">{ndim}I", content[4:header])
    if len(content) != header + math.prod(dims):
        return None
    return dims, content[header:]


def read(content: bytes) -> torch.Tensor:
    """read_idx of `content` written to a file named NAME."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / NAME
        path.write_bytes(content)
        return read_idx(path)


def assert_clear_error(err: DataError, path_part: str) -> None:
    message = str(err)
    assert path_part in message and "\n" not in message, message


def assert_read_as_the_format_says(content: bytes) -> None:
    """read_idx gives exactly the array a well-formed file holds, and DataError naming the file
    for anything else: no other exception, no wrong tensor."""
    expected = decode(content)
    try:
        got = read(content)
    except DataError as err:
        assert expected is None, f"rejected a well-formed file of shape {expected[0]}: {err}"
        assert_clear_error(err, NAME)
        return
    assert expected is not None, f"accepted a malformed file as {tuple(got.shape)}"
    assert got.dtype == torch.uint8 and tuple(got.shape) == expected[0]
    assert bytes(got.flatten().tolist()) == expected[1]


@FUZZ
@given(idx_arrays)
def test_valid_idx_files_read_back_exactly(array):
    got = read(idx_bytes(array))
    assert got.dtype == torch.uint8 and tuple(got.shape) == array.shape
    assert torch.equal(got, torch.from_numpy(array.copy()))


@settings(FUZZ, max_examples=30)
@given(idx_arrays)
def test_gzip_compressed_idx_files_are_rejected_by_name(array):
    # read_idx reads raw IDX only (torchvision leaves the decompressed files in MNIST/raw); a .gz
    # copy under the raw name must be a clear error, not a tensor of compressed bytes
    content = gzip.compress(idx_bytes(array))
    try:
        read(content)
    except DataError as err:
        assert_clear_error(err, NAME)
        assert "magic number" in str(err)
    else:
        raise AssertionError("a gzip file was read as IDX")


@st.composite
def corrupted_idx_files(draw) -> bytes:
    """A valid IDX file broken in one of the ways a download, a disk or a user breaks files."""
    content = idx_bytes(draw(idx_arrays))
    ndim = content[3]
    how = draw(st.sampled_from(["truncate", "append", "magic", "ndim", "dim", "overwrite", "random"]))
    if how == "truncate":
        return content[: draw(st.integers(0, len(content) - 1))]
    if how == "append":
        return content + draw(st.binary(min_size=1, max_size=64))
    if how == "magic":
        at = draw(st.integers(0, 2))
        byte = draw(st.integers(0, 255).filter(lambda b: b != content[at]))
        return content[:at] + bytes([byte]) + content[at + 1 :]
    if how == "ndim":
        new = draw(st.integers(0, 255).filter(lambda n: n != ndim))
        return content[:3] + bytes([new]) + content[4:]
    if how == "dim":
        at = 4 + 4 * draw(st.integers(0, ndim - 1))
        dim = draw(st.one_of(st.integers(0, 40), st.sampled_from([2**16, 2**31, 2**32 - 1])))
        return content[:at] + dim.to_bytes(4, "big") + content[at + 4 :]
    if how == "overwrite":
        at = draw(st.integers(0, len(content) - 1))
        patch = draw(st.binary(min_size=1, max_size=8))
        return content[:at] + patch + content[at + len(patch) :]
    # random bytes, half of them behind a valid magic number so the header checks get exercised
    rest = draw(st.binary(max_size=96))
    return draw(st.sampled_from([rest, b"\x00\x00\x08" + rest]))


# Four dimensions of 65536 multiply to 2**64: a size computed in int64 wraps to 0 and the empty
# payload passes the length check.
@settings(FUZZ, max_examples=400)
@given(corrupted_idx_files())
@example(b"\x00\x00\x08\x04" + (2**16).to_bytes(4, "big") * 4)
@example(b"\x00\x00\x08\x01" + bytes(4))
@example(b"\x00\x00\x08\x03" + (2**32 - 1).to_bytes(4, "big") * 2 + bytes(4))
def test_corrupted_idx_files_give_the_array_or_a_clear_error(content):
    assert_read_as_the_format_says(content)


@settings(FUZZ, max_examples=100)
@given(idx_arrays, st.data())
def test_truncated_or_extended_idx_files_are_always_rejected(array, data):
    content = idx_bytes(array)
    broken = data.draw(
        st.one_of(
            st.integers(0, len(content) - 1).map(lambda n: content[:n]),
            st.binary(min_size=1, max_size=32).map(lambda extra: content + extra),
        )
    )
    try:
        read(broken)
    except DataError as err:
        assert_clear_error(err, NAME)
    else:
        raise AssertionError(f"{len(broken)} bytes of a {len(content)}-byte file were accepted")


# Labels 0-9 most of the time, so that valid splits are drawn too.
label_values = st.one_of(st.integers(0, 9), st.integers(0, 255))


@st.composite
def split_arrays(draw) -> tuple[np.ndarray, np.ndarray]:
    n_images = draw(st.integers(0, 6))
    n_labels = draw(st.one_of(st.just(n_images), st.integers(0, 8)))
    seed = draw(st.integers(0, 2**32 - 1))
    image_shape = draw(
        st.one_of(
            st.just((n_images, 28, 28)),
            array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=29),
        )
    )
    images = np.random.default_rng(seed).integers(0, 256, image_shape, dtype=np.uint8)
    labels = np.array(draw(st.lists(label_values, min_size=n_labels, max_size=n_labels)), dtype=np.uint8)
    if draw(st.integers(0, 9)) == 0:  # now and then a labels file that is not a list
        labels = labels.reshape(1, -1)
    return images, labels


@settings(FUZZ, max_examples=150)
@given(st.sampled_from(sorted(FILES)), split_arrays())
def test_load_split_pairs_images_with_labels_or_names_the_bad_file(split, arrays):
    images, labels = arrays
    with tempfile.TemporaryDirectory() as root:
        folder = raw_folder(root)
        folder.mkdir(parents=True)
        images_file, labels_file = (folder / name for name in FILES[split])
        write_idx(images_file, torch.from_numpy(images))
        write_idx(labels_file, torch.from_numpy(labels))

        # which file is at fault, in the order a reader would look
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            bad, what = images_file, "28 x 28"
        elif labels.ndim != 1:
            bad, what = labels_file, "not a list of labels"
        elif len(labels) != len(images):
            bad, what = labels_file, f"{len(labels)} labels for {len(images)} images"
        elif len(labels) and labels.max() > 9:
            bad, what = labels_file, "outside 0-9"
        else:
            bad = what = None

        try:
            got_images, got_labels = load_split(root, split)
        except DataError as err:
            assert bad is not None, f"a valid split was rejected: {err}"
            assert_clear_error(err, str(bad))
            assert what in str(err)
            return
        assert bad is None, f"{bad.name} should have been rejected"
        assert got_images.dtype == torch.uint8 and got_images.shape == (len(images), 28, 28)
        assert got_labels.dtype == torch.int64 and got_labels.shape == (len(images),)
        assert torch.equal(got_images, torch.from_numpy(images))
        assert got_labels.tolist() == labels.tolist()


@st.composite
def datasets_and_indices(draw, valid: bool = True):
    n = draw(st.integers(1, 16))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=generator, dtype=torch.int64)
    # negative indices count from the end, as in Python: RandomSampler never makes them, but
    # nothing in GatherBatch rejects them either
    index = st.integers(-n, n - 1)
    indices = draw(st.one_of(st.lists(index, max_size=40), st.lists(index, min_size=1, max_size=1)))
    if not valid:
        wrong = draw(st.one_of(st.integers(n, n + 100), st.integers(-n - 100, -n - 1)))
        indices.insert(draw(st.integers(0, len(indices))), wrong)
    return images, labels, indices


@FUZZ
@given(datasets_and_indices())
def test_gather_batch_is_the_indexed_images_and_labels(case):
    images, labels, indices = case
    batch_images, batch_labels = GatherBatch(images, labels)(indices)
    assert batch_images.dtype == torch.uint8 and batch_images.shape == (len(indices), 1, 28, 28)
    assert batch_labels.dtype == torch.int64 and batch_labels.shape == (len(indices),)
    for row, i in enumerate(indices):
        assert torch.equal(batch_images[row], images[i]) and batch_labels[row] == labels[i]
    # the batch is a copy: in-place work on it downstream must not change the dataset
    before = images.clone()
    batch_images.fill_(7)
    assert torch.equal(images, before)


@FUZZ
@given(datasets_and_indices())
def test_index_batch_then_gather_equals_gather_batch(case):
    images, labels, indices = case
    index = index_batch(indices)
    assert index.dtype == torch.int64 and index.shape == (len(indices),)
    assert index.tolist() == indices
    batch_images, batch_labels = GatherBatch(images, labels)(indices)
    assert torch.equal(images[index], batch_images)
    assert torch.equal(labels[index], batch_labels)


@settings(FUZZ, max_examples=50)
@given(datasets_and_indices(valid=False))
def test_gather_batch_out_of_range_index_is_an_index_error(case):
    # The DataModule hands GatherBatch only positions of its own index lists, so a bad index is a
    # bug in the caller, not a user mistake: torch's IndexError, never a silently wrong batch.
    images, labels, indices = case
    try:
        GatherBatch(images, labels)(indices)
    except IndexError as err:
        assert "out of bounds" in str(err)
    else:
        raise AssertionError(f"indices {indices} gathered from {len(images)} images")
