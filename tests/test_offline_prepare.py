"""``data prepare --sequence offline`` (tasks/offline_build.py) on tiny local fixtures in
torchvision's real on-disk formats (tests/fakes): the archives' format and per-class counts, the
seeded selection recomputed by hand, the class names of ../shared/data's archives, the
checkpoint's SHA-256 check, the one-line error without network, and the CLI end to end."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.errors import CFBenchError
from run_benchmark import main
from tasks import load_task, offline_build, offline_fetch, offline_raw, offline_weights
from tasks.offline_build import SPECS, prepare_offline
from tests.conftest import SHARED
from tests.fakes import torchvision_archives, torchvision_formats
from tests.fakes.images import decode

STEMS = ["mnist", "gtsrb", "dtd10", "cifar10", "caltech101"]
# images per class the fixtures hold (per split; DTD: per each of its 3 lists) and asked for
FAKE = {"mnist": 4, "gtsrb": 4, "dtd": 2, "cifar10": 5, "caltech101": 3}
SMALL = {"mnist": (3, 2), "gtsrb": (3, 2), "dtd10": (4, 2), "cifar10": (3, 2)}
SHAPES = {
    "mnist": (28, 28, 1),
    "gtsrb": (32, 32, 3),
    "dtd10": (64, 64, 3),
    "cifar10": (32, 32, 3),
    "caltech101": (32, 32, 3),
}


def write_sources(root: Path, only: tuple[str, ...] = tuple(FAKE)) -> None:
    writers = {
        "mnist": torchvision_formats.mnist,
        "gtsrb": torchvision_formats.gtsrb,
        "dtd": torchvision_formats.dtd,
        "cifar10": torchvision_formats.cifar10,
        "caltech101": torchvision_archives.caltech101,
    }
    for name in only:
        writers[name](root / name, FAKE[name])


def fake_checkpoint(tmp: Path, monkeypatch) -> str:
    """A stand-in release file served from a file:// URL (no network), as the default."""
    release = tmp / "release" / "resnet20.th"
    release.parent.mkdir(parents=True)
    release.write_bytes(b"not the real weights, but checked like them")
    digest = hashlib.sha256(release.read_bytes()).hexdigest()
    monkeypatch.setattr(offline_weights, "RESNET20_URL", release.as_uri())
    monkeypatch.setattr(offline_weights, "RESNET20_SHA256", digest)
    return digest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The five archives built once from the fixtures, small per-class counts."""
    root = tmp_path_factory.mktemp("offline") / "data"
    write_sources(root)
    weights = root.parent / "weights" / offline_weights.RESNET20
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"a checkpoint already in place")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CFBENCH_WEIGHTS", raising=False)
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        mp.setattr(offline_weights, "RESNET20_SHA256", digest)
        prepare_offline(root, log=lines.append, per_class=SMALL)
    return root, lines


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_archives_have_the_format_and_per_class_counts(built):
    root, lines = built
    expected = {
        "mnist": ([3] * 10, [2] * 10),
        "gtsrb": ([3] * 43, [2] * 43),
        "dtd10": ([4] * 10, [2] * 10),
        "cifar10": ([3] * 10, [2] * 10),
        "caltech101": ([2] * 101, [1] * 101),
    }  # 3 images a class: 2/3 to train
    for stem in STEMS:
        a = arrays(root / f"{stem}.npz")
        assert sorted(a) == ["classes", "x_test", "x_train", "y_test", "y_train"], stem
        for split, counts in zip(("train", "test"), expected[stem], strict=True):
            x, y = a[f"x_{split}"], a[f"y_{split}"]
            assert x.dtype == np.uint8 and y.dtype == np.int64, stem
            assert x.shape == (sum(counts), *SHAPES[stem]) and y.shape == (sum(counts),), stem
            assert np.bincount(y, minlength=len(counts)).tolist() == counts, (stem, split)
        assert a["classes"].dtype.kind == "U" and len(a["classes"]) == len(expected[stem][0])
    assert any(line.startswith("[5/5] caltech101") for line in lines)
    record = offline_build.read_provenance(root)["archives"]["gtsrb"]
    assert record["sha256"] == hashlib.sha256((root / "gtsrb.npz").read_bytes()).hexdigest()
    assert record["source"] == "torchvision.datasets.GTSRB" and record["per_class"] == [3, 2]


def test_gtsrb_selection_recomputed_by_hand(built):
    """Official split: per class sorted rng.choice (train for all classes, then test), then
    one permutation per split, from one default_rng(0). The fixture's images encode (split,
    label, k) in their colour and its files sort in k order within a class."""
    root, _ = built
    rng = np.random.default_rng(0)
    train = [(0, c, int(k)) for c in range(43) for k in sorted(rng.choice(4, 3, replace=False))]
    test = [(1, c, int(k)) for c in range(43) for k in sorted(rng.choice(4, 2, replace=False))]
    train = [train[i] for i in rng.permutation(len(train))]
    test = [test[i] for i in rng.permutation(len(test))]
    a = arrays(root / "gtsrb.npz")
    for split, want in (("train", train), ("test", test)):
        got = [decode(Image.fromarray(x)) for x in a[f"x_{split}"]]
        assert got == want, split
        assert a[f"y_{split}"].tolist() == [label for _, label, _ in want]


def test_dtd10_split_recomputed_by_hand(built):
    """No official split: per class one rng.permutation of its sorted files, the first 4 to
    train and the next 2 to test (80 / 40 of 120 for the real data), then the shuffles. The
    fixture's files per class sort as list (0, 1, 2) x k (0, 1): index = 2 list + k."""
    root, _ = built
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in range(10):
        p = rng.permutation(6)
        train += [(c, int(i)) for i in sorted(p[:4])]
        test += [(c, int(i)) for i in sorted(p[4:6])]
    train = [train[i] for i in rng.permutation(len(train))]
    test = [test[i] for i in rng.permutation(len(test))]
    a = arrays(root / "dtd10.npz")
    for split, want in (("train", train), ("test", test)):
        got = [decode(Image.fromarray(x)) for x in a[f"x_{split}"]]
        assert [(label, 2 * code + k) for code, label, k in got] == want, split


def test_shorter_side_then_centre_crop():
    """A 90x60 horizontal ramp: shorter side to 32 makes it round(90 * 32 / 60) = 48 wide
    (Pillow bicubic), then the crop starts at floor((48 - 32) / 2) = 8; grey becomes RGB."""
    ramp = Image.fromarray(np.tile(np.arange(0, 180, 2, dtype=np.uint8), (60, 1)))  # mode L
    got = offline_raw.shorter_side_crop(ramp, 32)
    want = np.asarray(ramp.convert("RGB").resize((48, 32), Image.Resampling.BICUBIC))[:, 8:40]
    assert got.shape == (32, 32, 3) and np.array_equal(got, want)
    tall = offline_raw.shorter_side_crop(ramp.transpose(Image.Transpose.TRANSPOSE), 32)
    assert np.array_equal(tall, want.transpose(1, 0, 2))  # same rule along the other side


def test_gtsrb_roi_crop_clamped(tmp_path):
    """The CSV's ROI box (X2 past the image's edge: clamped), then 32x32 bicubic."""
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 50, 3), np.uint8))
    image.save(tmp_path / "00000_00000.ppm")
    got = offline_raw.gtsrb_load((str(tmp_path / "00000_00000.ppm"), (6, 4, 70, 30)))
    want = image.crop((6, 4, 50, 30)).resize((32, 32), Image.Resampling.BICUBIC)
    assert np.array_equal(got, np.asarray(want))


@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data absent")
def test_class_names_and_format_match_shared(built):
    root, _ = built
    for stem in STEMS:
        ours, theirs = arrays(root / f"{stem}.npz"), arrays(SHARED / "data" / f"{stem}.npz")
        assert ours["classes"].tolist() == theirs["classes"].tolist(), stem
        for key in ("x_train", "y_train", "x_test", "y_test"):
            assert ours[key].dtype == theirs[key].dtype, (stem, key)
            assert ours[key].shape[1:] == theirs[key].shape[1:], (stem, key)
        assert SPECS[stem].shape == theirs["x_train"].shape[1:]


def test_kept_unless_force_and_rebuilt_byte_identical(built, tmp_path):
    root, _ = built
    before = {s: (root / f"{s}.npz").read_bytes() for s in ("mnist", "cifar10")}
    lines: list[str] = []
    for stem in before:
        offline_build.build_archive(stem, root, per_class=SMALL[stem], log=lines.append)
    assert sum("kept" in line for line in lines) == 2 and not any("wrote" in x for x in lines)
    for stem, data in before.items():
        offline_build.build_archive(stem, root, True, SMALL[stem], log=lines.append)
        assert (root / f"{stem}.npz").read_bytes() == data  # same raw files, same bytes
    (root / "mnist.npz").write_bytes(b"truncated")  # not an archive: built again
    offline_build.build_archive("mnist", root, per_class=SMALL["mnist"], log=lines.append)
    assert (root / "mnist.npz").read_bytes() == before["mnist"]


def test_checkpoint_sha256_good_and_bad(tmp_path, monkeypatch):
    monkeypatch.delenv("CFBENCH_WEIGHTS", raising=False)
    digest = fake_checkpoint(tmp_path, monkeypatch)
    root = tmp_path / "data"
    target = tmp_path / "weights" / offline_weights.RESNET20
    record = offline_weights.fetch_checkpoint(root, log=lambda _: None)
    assert target.read_bytes() == (tmp_path / "release" / "resnet20.th").read_bytes()
    assert record["sha256"] == digest
    bad = tmp_path / "bad.th"
    bad.write_bytes(b"tampered")
    target.unlink()
    with pytest.raises(CFBenchError) as error:
        offline_weights.fetch_checkpoint(root, url=bad.as_uri(), log=lambda _: None)
    assert "\n" not in str(error.value) and "refused" in str(error.value)
    assert not target.exists() and not list(target.parent.iterdir())  # nothing written
    target.write_bytes(b"tampered")  # a wrong file already there: refused unless --force
    with pytest.raises(CFBenchError, match="--force"):
        offline_weights.fetch_checkpoint(root, log=lambda _: None)
    offline_weights.fetch_checkpoint(root, force=True, log=lambda _: None)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest


@pytest.mark.skipif(not (SHARED / "weights").is_dir(), reason="../shared/weights absent")
def test_release_hash_is_the_shared_copys(tmp_path, monkeypatch):
    shared = SHARED / "weights" / offline_weights.RESNET20
    assert hashlib.sha256(shared.read_bytes()).hexdigest() == offline_weights.RESNET20_SHA256
    monkeypatch.setenv("CFBENCH_WEIGHTS", str(tmp_path / "w"))
    offline_weights.fetch_checkpoint(tmp_path / "data", url=shared.as_uri(), log=lambda _: None)
    assert (tmp_path / "w" / offline_weights.RESNET20).read_bytes() == shared.read_bytes()


def test_no_network_one_line_and_nothing_lost(built, tmp_path, monkeypatch, capsys):
    """No network: every source not on disk is named in one line (URL and exact place), exit
    2; what can be built is built, and an archive already there is left as it was."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.delenv("CFBENCH_WEIGHTS", raising=False)
    root = tmp_path / "data"
    write_sources(root, ("mnist",))
    kept = (built[0] / "cifar10.npz").read_bytes()  # built earlier; its sources are gone now
    (root / "cifar10.npz").write_bytes(kept)
    assert main(["data", "prepare", "--sequence", "offline", "--data-root", str(root)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: could not download (no network?): put")
    for url, place in [
        (offline_fetch.GTSRB_URL + "{GTSRB-Training_fixed.zip,", root / "gtsrb" / "gtsrb"),
        (offline_fetch.DTD_URL, root / "dtd" / "dtd" / "dtd-r1.0.1.tar.gz"),
        (offline_fetch.CALTECH_URL, root / "caltech101" / "caltech101" / "caltech-101.zip"),
        (offline_weights.RESNET20_URL, tmp_path / "weights" / offline_weights.RESNET20),
    ]:
        assert f"put {url}" in err and f"{place}" in err, url
    assert "cifar-10" not in err and (root / "cifar10.npz").read_bytes() == kept
    assert "mnist" not in err and (root / "mnist.npz").is_file()  # its sources were there
    assert "mnist: wrote" in out and "gtsrb: download failed (URLError" in out
    assert "--data-root " + str(root) in err


def test_hints_name_torchvision_urls():
    """The hand-fetch hints name the files torchvision's classes download (so the archive put
    there passes their MD5 check and is unpacked on the next run)."""
    from torchvision.datasets import CIFAR10, DTD, MNIST

    assert offline_fetch.CIFAR10_URL == CIFAR10.url and offline_fetch.DTD_URL == DTD._URL
    assert offline_fetch.MNIST_URL == MNIST.mirrors[0]
    hint = offline_fetch.SOURCES["mnist"].hint
    assert all(name.removesuffix(".gz") in hint for name, _ in MNIST.resources)
    assert CIFAR10.filename in offline_fetch.SOURCES["cifar10"].hint


def test_cli_end_to_end_then_load_task(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CFBENCH_WEIGHTS", raising=False)
    fake_checkpoint(tmp_path, monkeypatch)
    for stem, counts in SMALL.items():
        monkeypatch.setitem(SPECS, stem, replace(SPECS[stem], per_class=counts))
    root = tmp_path / "data"
    write_sources(root)
    argv = ["data", "prepare", "--sequence", "offline", "--data-root", str(root)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count(": wrote ") == 6  # five archives and the checkpoint
    assert (tmp_path / "weights" / offline_weights.RESNET20).is_file()
    data = load_task("npz:mnist", root, download=False)
    assert (len(data.train), len(data.test)) == (30, 20)
    assert data.classnames == [str(d) for d in range(10)]
    image, label = data.train[0]
    assert image.size == (28, 28) and decode(image, grayscale=True)[1] == label
    gtsrb = load_task("npz:gtsrb", root, download=False)
    assert gtsrb.classnames[14] == "Stop" and len(gtsrb.test) == 86
    assert main(argv) == 0  # everything in place: nothing is built or fetched again
    assert capsys.readouterr().out.count("; kept") == 6


def test_missing_archive_names_the_prepare_command(tmp_path):
    from tasks import npz

    assert list(npz.OFFLINE_STEMS) == offline_build.offline_stems() == STEMS
    with pytest.raises(CFBenchError, match="data prepare --sequence offline"):
        load_task("npz:dtd10", tmp_path, download=False)
    with pytest.raises(CFBenchError) as other:
        load_task("npz:usps", tmp_path, download=False)  # not one this command builds
    assert "prepare" not in str(other.value)
