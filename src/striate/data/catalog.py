"""Known datasets: their files, SHA-256 checksums, official mirrors, classes and local copies."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class FileSpec:
    """One dataset file and the checksums that identify it.

    ``content_sha256`` is the hash of the decompressed IDX bytes, which survives
    re-compression (Debian re-gzips Fashion-MNIST); ``archive_sha256`` is the hash
    of the .gz file as the official mirror serves it. A file is genuine when either matches.
    """

    name: str  # e.g. train-images-idx3-ubyte.gz
    content_sha256: str | None = None
    archive_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset striate knows how to fetch and verify."""

    name: str
    files: dict[str, FileSpec]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    local_copies: tuple[str, ...] = field(default=())  # folders where OS packages install the files
    install_hint: str = ""


FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    files={
        "train_images": FileSpec("train-images-idx3-ubyte.gz",
                                 content_sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train_labels": FileSpec("train-labels-idx1-ubyte.gz",
                                 content_sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "test_images": FileSpec("t10k-images-idx3-ubyte.gz",
                                content_sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "test_labels": FileSpec("t10k-labels-idx1-ubyte.gz",
                                content_sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    local_copies=("/usr/share/datasets/fashion-mnist",),
    install_hint="sudo apt-get install dataset-fashion-mnist",
)

MNIST = DatasetSpec(
    name="mnist",
    files={
        "train_images": FileSpec("train-images-idx3-ubyte.gz",
                                 archive_sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train_labels": FileSpec("train-labels-idx1-ubyte.gz",
                                 archive_sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "test_images": FileSpec("t10k-images-idx3-ubyte.gz",
                                archive_sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "test_labels": FileSpec("t10k-labels-idx1-ubyte.gz",
                                archive_sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    classes=tuple(str(d) for d in range(10)),
    install_hint="download the four files of MNIST into a folder and run `striate data get mnist --from FOLDER`",
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (FASHION_MNIST, MNIST)}
