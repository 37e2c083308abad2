import pytest
import torch

from conftest import make_dataset, write_idx
from lit_mnist.data import (
    MEAN,
    SPEC,
    STD,
    AugmentSettings,
    DataError,
    GatherBatch,
    LoaderSettings,
    MNISTDataModule,
    load_split,
    pixel_statistics,
    preset_spec,
    random_affine,
    read_idx,
)
from lit_mnist.errors import ParameterError


def test_read_idx_round_trip(tmp_path):
    array = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    write_idx(tmp_path / "x", array)
    assert torch.equal(read_idx(tmp_path / "x"), array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc", "bad magic number"),
        (b"\x00\x00\x08\x03\x00\x00", "header is incomplete"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc", "truncated or corrupt"),
    ],
)
def test_read_idx_rejects_bad_files_by_name(tmp_path, content, message):
    (tmp_path / "bad-file").write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_idx(tmp_path / "bad-file")
    assert "bad-file" in str(err.value) and "\n" not in str(err.value)


def test_load_split_checks_labels_against_images(tmp_path):
    make_dataset(tmp_path, n_train=30, n_test=10)
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "t10k-labels-idx1-ubyte", torch.zeros(9, dtype=torch.uint8))
    with pytest.raises(DataError, match="9 labels for 10 images"):
        load_split(tmp_path, "test")
    write_idx(raw / "t10k-labels-idx1-ubyte", torch.full((10,), 11, dtype=torch.uint8))
    with pytest.raises(DataError, match="outside 0-9"):
        load_split(tmp_path, "test")


def prepared(fake_mnist, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(data_dir=str(fake_mnist), val_size=50, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_split_sizes_and_seed(fake_mnist):
    dm = prepared(fake_mnist)
    assert (len(dm.train_idx), len(dm.val_idx)) == (250, 50)
    assert sorted(torch.cat([dm.train_idx, dm.val_idx]).tolist()) == list(range(300))
    assert torch.equal(prepared(fake_mnist).val_idx, dm.val_idx)
    assert not torch.equal(prepared(fake_mnist, split_seed=1).val_idx, dm.val_idx)


def test_default_split_is_55000_5000():
    dm = MNISTDataModule()
    assert dm.hparams.val_size == 5000


def test_val_size_may_be_a_fraction_of_the_training_images(fake_mnist):
    dm = MNISTDataModule(data_dir=str(fake_mnist), val_size=0.1)
    dm.setup("fit")
    assert (len(dm.val_idx), len(dm.train_idx)) == (30, 270)


@pytest.mark.parametrize("val_size", [0, 300, 1000, 2.5])
def test_val_size_outside_training_set_is_rejected(fake_mnist, val_size):
    with pytest.raises(ParameterError, match="val_size must be a count between 1 and 299"):
        MNISTDataModule(data_dir=str(fake_mnist), val_size=val_size).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"loader": LoaderSettings(num_workers=-1)}, r"loader\.num_workers must be 0 or more"),
        (
            {"loader": LoaderSettings(persistent_workers=True)},
            r"loader\.num_workers must be above 0 for persistent_workers",
        ),
        (
            {"loader": LoaderSettings(prefetch_factor=2)},
            r"loader\.num_workers must be above 0 for persistent_workers or prefetch_factor",
        ),
    ],
)
def test_impossible_loader_settings_are_rejected(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        MNISTDataModule(**kwargs)


def test_drop_last_drops_only_the_last_training_batch(fake_mnist):
    dm = prepared(fake_mnist, batch_size=100, eval_batch_size=30, loader=LoaderSettings(drop_last=True))
    assert len(dm.train_dataloader()) == 2  # 250 images
    assert len(dm.val_dataloader()) == 2  # 50 images: the last batch of 20 is kept


def test_settings_survive_a_weights_only_load(tmp_path):
    """Lightning stores the datamodule's arguments in checkpoints and reads them with weights_only."""
    dm = MNISTDataModule(loader=LoaderSettings(drop_last=True), augment=AugmentSettings(degrees=10))
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, tmp_path / "hp.ckpt")
    loaded = torch.load(tmp_path / "hp.ckpt", weights_only=True)["datamodule_hyper_parameters"]
    assert loaded == dict(dm.hparams)
    assert loaded["augment"].enabled and not AugmentSettings().enabled


def test_collate_gathers_uint8_batch_in_sampled_order():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 28, 28).contiguous()
    labels = torch.arange(10)
    batch_images, batch_labels = GatherBatch(images, labels)([7, 2, 9])
    assert batch_images.shape == (3, 1, 28, 28) and batch_images.dtype == torch.uint8
    assert batch_labels.dtype == torch.int64
    assert batch_labels.tolist() == [7, 2, 9]
    assert batch_images[:, 0, 0, 0].tolist() == [7, 2, 9]


def test_loader_batches_are_uint8_and_match_the_split(fake_mnist):
    dm = prepared(fake_mnist, batch_size=32)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.uint8
    all_images, all_labels = dm.images, dm.labels
    # every sampled image is the training image with the same label, and none is a validation image
    train_set = set(dm.train_idx.tolist())
    for image, label in zip(images, labels, strict=True):
        matches = (all_images == image).flatten(1).all(1).nonzero().flatten().tolist()
        assert any(i in train_set and all_labels[i] == label for i in matches)
    val_images, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(val_images, all_images[dm.val_idx[: len(val_images)]])


def test_test_loader_serves_the_official_test_images(fake_mnist):
    dm = prepared(fake_mnist)
    test_images, test_labels = load_split(fake_mnist, "test")
    images, labels = next(iter(dm.test_dataloader()))
    assert len(images) == 100
    assert torch.equal(images[:, 0], test_images) and torch.equal(labels, test_labels)


def test_on_device_path_gives_the_same_batches(fake_mnist):
    host = prepared(fake_mnist, shuffle_seed=5, batch_size=40)
    device = prepared(fake_mnist, shuffle_seed=5, batch_size=40, on_device=True)
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        for host_batch, index in zip(getattr(host, name)(), getattr(device, name)(), strict=True):
            assert index.dtype == torch.long and index.ndim == 1  # only indices leave the loader
            expected = host.on_after_batch_transfer(host_batch, 0)
            got = device.on_after_batch_transfer(index, 0)
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_shuffle_seed_fixes_the_training_order(fake_mnist):
    def first_labels(seed):
        return next(iter(prepared(fake_mnist, shuffle_seed=seed).train_dataloader()))[1]

    assert torch.equal(first_labels(3), first_labels(3))
    assert not torch.equal(first_labels(3), first_labels(4))


def test_normalisation_happens_after_transfer():
    with preset_spec(SPEC):
        dm = MNISTDataModule()
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    labels = torch.tensor([1, 2])
    out_images, out_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert out_images.dtype == torch.float32
    expected = torch.tensor([-MEAN / STD, (1 - MEAN) / STD]).view(2, 1, 1, 1)
    assert torch.allclose(out_images, expected)
    assert torch.equal(out_labels, labels)


def test_missing_files_without_download_name_folder_and_files(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(ParameterError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert name in message
    assert message.startswith(f"data_dir {tmp_path}: ") and "\n" not in message


def test_failed_download_is_one_clear_line(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno route to host")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(ParameterError, match=r"download failed \(Error downloading") as err:
        MNISTDataModule(data_dir=str(tmp_path)).prepare_data()
    assert "\n" not in str(err.value) and "t10k-labels-idx1-ubyte" in str(err.value)


def test_random_affine_at_zero_strength_is_the_identity():
    images = torch.rand(5, 1, 28, 28) * 255
    torch.testing.assert_close(random_affine(images, 0, 0, 0), images, atol=1e-3, rtol=0)


def test_random_affine_shifts_within_bounds():
    torch.manual_seed(0)
    images = torch.zeros(200, 1, 28, 28)
    images[:, :, 12:16, 12:16] = 255  # a square at the centre

    def centre(x):
        rows, cols = torch.arange(28.0).view(1, 28, 1), torch.arange(28.0).view(1, 1, 28)
        mass = x[:, 0]
        return (
            torch.stack([(mass * rows).sum((1, 2)), (mass * cols).sum((1, 2))], 1) / mass.sum((1, 2))[:, None]
        )

    moved = (centre(random_affine(images, 0, 0.1, 0)) - centre(images)).abs()
    assert moved.max() <= 2.8 + 0.05  # 10% of 28 pixels
    assert (moved.max(1).values > 0.5).float().mean() > 0.5  # most squares did move


def test_augmentation_changes_training_batches_only(fake_mnist):
    from types import SimpleNamespace

    dm = prepared(fake_mnist, augment=AugmentSettings(degrees=15, shift=0.1, scale=0.1))
    batch = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=False)
    spec = dm.spec
    torch.testing.assert_close(dm.on_after_batch_transfer(batch, 0)[0], spec.normalize(batch[0]))
    dm.trainer = SimpleNamespace(training=True)
    augmented, labels = dm.on_after_batch_transfer(batch, 0)
    assert augmented.shape == batch[0].shape and augmented.dtype == torch.float32
    assert not torch.allclose(augmented, spec.normalize(batch[0]))
    (mean,), (std,) = spec.mean, spec.std
    assert augmented.min() >= -mean / std - 1e-4 and augmented.max() <= (1 - mean) / std + 1e-4
    assert torch.equal(labels, batch[1])


def test_negative_augmentation_is_rejected():
    with pytest.raises(ParameterError, match=r"augment\.degrees must be 0 or more"):
        MNISTDataModule(augment=AugmentSettings(degrees=-5))


def test_spec_statistics_come_from_the_training_split(fake_mnist):
    dm = prepared(fake_mnist)
    spec = dm.spec
    assert spec.shape == (1, 28, 28) and spec.num_classes == 10 and spec.class_names[3] == "3"
    train = dm.images[dm.train_idx].double() / 255
    assert spec.mean[0] == pytest.approx(train.mean().item(), abs=1e-4)
    assert spec.std[0] == pytest.approx(train.std().item(), abs=1e-3)
    # the validation and test images are left out: the statistics of all images differ
    assert pixel_statistics(dm.images) != (spec.mean, spec.std)
    assert (spec.mean[0], spec.std[0]) != (MEAN, STD)


def test_pixel_statistics_are_per_channel():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:, 1] = 255
    images[:2, 2] = 255
    assert pixel_statistics(images) == ((0.0, 1.0, 0.5), (0.001, 0.001, 0.5))


@pytest.mark.parametrize("dataset", ["FashionMNIST", "KMNIST"])
def test_the_mnist_family_reads_its_own_folder_and_names_its_classes(tmp_path, dataset):
    # generated files in the dataset's layout: the real ones cannot be downloaded here
    make_dataset(tmp_path, n_train=120, n_test=40, dataset=dataset)
    dm = MNISTDataModule(data_dir=str(tmp_path), dataset=dataset, val_size=20, download=False)
    dm.setup("fit")
    assert (len(dm.train_idx), len(dm.val_idx), len(dm.test_idx)) == (100, 20, 40)
    names = dm.spec.class_names
    assert len(names) == 10 and names[0] == {"FashionMNIST": "T-shirt/top", "KMNIST": "o"}[dataset]
    with pytest.raises(ParameterError, match=rf"MNIST files missing in {tmp_path}/MNIST/raw"):
        _ = MNISTDataModule(data_dir=str(tmp_path), download=False).spec


def test_an_unknown_dataset_is_named():
    with pytest.raises(
        ParameterError, match=r"dataset must be one of MNIST, FashionMNIST, KMNIST, got 'EMNIST'"
    ):
        MNISTDataModule(dataset="EMNIST")


def test_a_preset_spec_reads_no_data(tmp_path):
    with preset_spec(SPEC):
        dm = MNISTDataModule(data_dir=str(tmp_path / "absent"), download=False)
    assert dm.spec == SPEC and not len(dm.images)
