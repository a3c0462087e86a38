"""The four learning paradigms of the lecture on a 2-D toy problem.

Two interleaved half-moons; only a handful of points carry a label. Each
strategy returns a ``predict(points) -> labels`` function, so that the same plot
can draw every decision boundary:

* supervised: logistic regression on the labelled points only;
* semi-supervised: label spreading over a similarity graph of *all* points
  (Zhou et al. 2004), so labels flow along the moons;
* unsupervised: k-means with two clusters -- structure without labels, the
  two clusters named after the labelled points inside them (one class each);
* self-supervised: a pretext task on all points (pull every point towards its
  nearest neighbour and away from the others, an InfoNCE loss) trains a small
  encoder (a point and one of its 30 nearest neighbours are a positive pair);
  a linear head on its features then needs only the few labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_moons
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.semi_supervised import LabelSpreading
from torch import nn

from course_lib.contrastive import info_nce

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class ToyProblem:
    points: np.ndarray  # (N, 2) every point
    labels: np.ndarray  # (N,) true classes, used only for scoring
    labeled: np.ndarray  # indices of the points whose label a method may see
    test_points: np.ndarray
    test_labels: np.ndarray


def make_toy_problem(labels_per_class: int = 3, num_points: int = 400, noise: float = 0.1,
                     seed: int = 0) -> ToyProblem:
    """Two moons with ``labels_per_class`` labelled points per class."""
    if labels_per_class < 1:
        raise ValueError(f"labels_per_class must be >= 1, got {labels_per_class}")
    points, labels = make_moons(num_points, noise=noise, random_state=seed)
    test_points, test_labels = make_moons(1000, noise=noise, random_state=seed + 1)
    rng = np.random.default_rng(seed)
    labeled = np.concatenate([rng.choice(np.flatnonzero(labels == c), labels_per_class, replace=False)
                              for c in (0, 1)])
    return ToyProblem(points.astype(np.float32), labels, np.sort(labeled), test_points.astype(np.float32),
                      test_labels)


def relabel(problem: ToyProblem, labels_per_class: int, seed: int = 0) -> ToyProblem:
    """The same points (and test set) with another random labelled subset: ``labels_per_class``
    points of each class, drawn with ``seed``. For curves over label budgets and label draws
    on one fixed set of points (``make_toy_problem`` draws new points with every seed)."""
    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise ValueError(f"labels_per_class must be an int >= 1, got {labels_per_class!r}")
    smallest = int(np.bincount(problem.labels, minlength=2).min())
    if labels_per_class > smallest:
        raise ValueError(f"labels_per_class={labels_per_class} but the smaller class has only {smallest} points")
    rng = np.random.default_rng(seed)
    labeled = np.concatenate([rng.choice(np.flatnonzero(problem.labels == c), labels_per_class, replace=False)
                              for c in (0, 1)])
    return dataclasses.replace(problem, labeled=np.sort(labeled))


def supervised(problem: ToyProblem) -> Predict:
    clf = LogisticRegression().fit(problem.points[problem.labeled], problem.labels[problem.labeled])
    return clf.predict


def semi_supervised(problem: ToyProblem, gamma: float = 20.0) -> Predict:
    y = np.full(len(problem.points), -1)  # -1 = unlabelled
    y[problem.labeled] = problem.labels[problem.labeled]
    model = LabelSpreading(kernel="rbf", gamma=gamma, alpha=0.2, max_iter=1000).fit(problem.points, y)
    return model.predict


def unsupervised(problem: ToyProblem, seed: int = 0) -> Predict:
    km = KMeans(2, n_init=10, random_state=seed).fit(problem.points)
    # name the clusters after the labelled points that fall in them: keep or swap the cluster ids,
    # whichever agrees with more labelled points (one class per cluster, so both classes appear)
    agree = int((km.labels_[problem.labeled] == problem.labels[problem.labeled]).sum())
    cluster_to_label = np.array([0, 1]) if 2 * agree >= len(problem.labeled) else np.array([1, 0])
    return lambda pts: cluster_to_label[km.predict(pts)]


class PointEncoder(nn.Module):
    """A small MLP: 2-D point -> h (dim features)."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, dim))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.net(p)


def pretrain_point_encoder(points: np.ndarray, steps: int = 600, k: int = 30,
                           seed: int = 0) -> tuple[PointEncoder, list[float]]:
    """The self-supervised pretext task: no labels, only which points are neighbours."""
    torch.manual_seed(seed)
    x = torch.as_tensor(points)
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points, return_distance=False)[:, 1:]
    g = torch.Generator().manual_seed(seed)
    encoder = PointEncoder()
    opt = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        pick = torch.as_tensor(neighbours)[torch.arange(len(x)), torch.randint(k, (len(x),), generator=g)]
        loss = info_nce(encoder(x), encoder(x[pick]))  # source: a point; positive: a neighbour
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return encoder.eval(), losses


def self_supervised(problem: ToyProblem, encoder: PointEncoder | None = None, seed: int = 0) -> Predict:
    """A linear head on the pre-trained encoder's features, fitted on the labelled points only."""
    if encoder is None:
        encoder, _ = pretrain_point_encoder(problem.points, seed=seed)

    def features(pts: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return encoder(torch.as_tensor(pts, dtype=torch.float32)).numpy()

    head = LogisticRegression(C=100.0, max_iter=1000).fit(features(problem.points[problem.labeled]), problem.labels[problem.labeled])
    return lambda pts: head.predict(features(pts))


def accuracy_on_test(problem: ToyProblem, predict: Predict) -> float:
    return float((predict(problem.test_points) == problem.test_labels).mean())
