"""genviz_lib: the experiments of the *genviz* book, fast and exact.

Layers, each importing only from the ones above it in this list:

- :mod:`genviz_lib.config`, :mod:`genviz_lib.progress` — profiles, device, seeding, the results cache; progress lines
- :mod:`genviz_lib.data`    — swiss roll, spirals, rings, Fashion-MNIST, digits, MNIST-1D, CIFAR-10, SVHN (and downloads)
- :mod:`genviz_lib.models`  — MLPs (and batched MLP ensembles), small CNNs, VGG, CIFAR ResNet-20
- :mod:`genviz_lib.losses`  — cross-entropy, the reverse cross-entropy, the poisoned loss, evaluation
- :mod:`genviz_lib.train`   — one trainer: poisoning, attack and confusion sets, checkpoints, ensembles
- measures, which never import the trainer: :mod:`genviz_lib.boundaries` (decision boundaries in input space),
  :mod:`genviz_lib.landscape` (batched objectives over flat parameters, filter-normalized directions, slices),
  :mod:`genviz_lib.volume` (basin radius and log-volume), :mod:`genviz_lib.curvature` (Hessian-vector
  products, Lanczos, traces, spectral density; :mod:`genviz_lib.sequential_curvature`, the written-out
  products of MLPs), :mod:`genviz_lib.sharpness` (sharpness, expected sharpness, PAC-Bayes),
  :mod:`genviz_lib.norms` (margins, norms, the normalized network and loss), :mod:`genviz_lib.scores`
  (sign-error and conditional mutual information of a measure against the gap), :mod:`genviz_lib.bounds`
  (the kl-inverse and Dziugaite and Roy's optimized PAC-Bayes bound)
- :mod:`genviz_lib.experiments` — the recipes that train what the chapters measure, cached
- :mod:`genviz_lib.sweep`   — the recipes as independent jobs, run in this process, in processes, on Ray or SLURM
- :mod:`genviz_lib.viz`     — figures
- :mod:`genviz_lib.widgets`, :mod:`genviz_lib.notebook` — widgets that also work in the static book; what a
  chapter takes from its notebook (glue)
"""

__version__ = "0.1.0"
