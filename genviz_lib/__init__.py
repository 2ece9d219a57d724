"""genviz_lib: the experiments of the *genviz* book, fast and exact.

Layers, each importing only from the ones above it in this list:

- :mod:`genviz_lib.config`  — profiles, device, seeding, the on-disk results cache
- :mod:`genviz_lib.data`    — swiss roll, spirals, rings, Fashion-MNIST, digits, MNIST-1D, CIFAR-10, SVHN
- :mod:`genviz_lib.models`  — MLPs (and batched MLP ensembles), small CNNs, VGG, CIFAR ResNet-20
- :mod:`genviz_lib.train`   — one trainer: poisoning, attack and confusion sets, checkpoints, ensembles
- :mod:`genviz_lib.landscape` — batched objectives over flat parameters, filter-normalized directions, slices
- :mod:`genviz_lib.volume`  — basin radius and log-volume
- :mod:`genviz_lib.curvature` — Hessian-vector products, Lanczos, Hutchinson, spectral density
- :mod:`genviz_lib.experiments` — experiments several chapters share (the swiss-roll minimizers)
- :mod:`genviz_lib.viz`     — figures
- :mod:`genviz_lib.widgets` — ipywidgets that also work in the static book
"""

__version__ = "0.1.0"
