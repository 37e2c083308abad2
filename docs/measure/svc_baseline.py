"""An RBF SVC on the same split as ImageFolderDataModule makes: the baseline of docs/results.md,
"Small data". Needs scikit-learn (`pip install scikit-learn`; not a dependency of the project).

    python docs/measure/svc_baseline.py ROOT SIZE

ROOT is an image folder as `lit-mnist fit --data.root=ROOT` reads it, SIZE the side the images are
scaled to (--data.size); the split is the data module's default (val_size 0.1, test/ or
test_size 0.1, split_seed 0). C and gamma are chosen on the validation split, the SVC is trained
on the training split and scored once on the test split.
"""

import sys
import time

import numpy as np
from sklearn.svm import SVC

from lit_mnist.data import ImageFolderDataModule


def main(root: str, size: int) -> None:
    data = ImageFolderDataModule(root=root, size=size, val_size=0.1)
    data.setup("fit")
    data.setup("test")

    def split(indices):
        pixels = data.images[indices].reshape(len(indices), -1).numpy().astype(np.float32) / 255
        return pixels, data.labels[indices].numpy()

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = map(
        split, (data.train_idx, data.val_idx, data.test_idx)
    )
    print(f"{root} at {size}: train {len(y_train)}, val {len(y_val)}, test {len(y_test)}")
    started = time.time()
    pixels = x_train.shape[1]
    grid = [(c, gamma) for c in (1, 3, 10, 30) for gamma in ("scale", 5 / pixels, 20 / pixels)]
    scored = [
        (SVC(C=c, gamma=gamma).fit(x_train, y_train).score(x_val, y_val), c, gamma) for c, gamma in grid
    ]
    val, c, gamma = max(scored, key=lambda s: s[0])
    test = SVC(C=c, gamma=gamma).fit(x_train, y_train).score(x_test, y_test)
    default = SVC().fit(x_train, y_train).score(x_test, y_test)
    print(
        f"SVC chosen on val: C={c} gamma={gamma} val {100 * val:.2f}% -> test {100 * test:.2f}%; "
        f"SVC() defaults test {100 * default:.2f}% ({time.time() - started:.0f}s)"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
