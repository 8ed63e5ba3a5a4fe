"""The MLMD-shaped workload: who used and produced what, at scale ``s`` (pure; both loaders read it).

Per unit of ``s``: 100 raw datasets, 50 code artifacts, 20 authors, 4
projects, 400 preprocessing runs (2 raw datasets in, 1 feature set out),
1,000 training runs (5 feature sets and 1 code artifact in, 1 model out, by
an author, in a project) and 200 deployments (1 model in, 100 predictions
out).  Choices are drawn from a seeded generator, so provault and the MLMD
baseline load the very same graph.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Shape:
    scale: int
    raw: int
    code: int
    authors: int
    projects: int
    prep: list[tuple[int, int]]
    """Per preprocessing run: its two raw datasets; run i produces feature set i."""
    train: list[tuple[tuple[int, ...], int, int, int]]
    """Per training run: (five feature sets, code, author, project); run j produces model j."""
    deploy: list[int]
    """Per deployment: the model it serves."""
    predictions_per_deployment: int

    @property
    def predictions(self) -> int:
        return len(self.deploy) * self.predictions_per_deployment

    @property
    def statements(self) -> int:
        """Lineage statements (MLMD events and attributions/associations): the unit sizes are quoted in."""
        return (
            len(self.prep) * 3
            + len(self.train) * (5 + 1 + 1 + 2)
            + len(self.deploy) * (1 + self.predictions_per_deployment)
        )

    def to_json(self) -> dict:
        return asdict(self)


def shape(scale: int, *, seed: int = 7) -> Shape:
    if scale < 1:
        raise ValueError(f"scale must be >= 1, found {scale}")
    rng = random.Random(seed * 1_000_003 + scale)
    raw, code, authors, projects = 100 * scale, 50 * scale, 20 * scale, 4 * scale
    n_prep, n_train, n_deploy = 400 * scale, 1000 * scale, 200 * scale
    prep = [tuple(rng.sample(range(raw), 2)) for _ in range(n_prep)]
    train = [
        (tuple(rng.sample(range(n_prep), 5)), rng.randrange(code), rng.randrange(authors), rng.randrange(projects))
        for _ in range(n_train)
    ]
    deploy = [rng.randrange(n_train) for _ in range(n_deploy)]
    return Shape(
        scale=scale,
        raw=raw,
        code=code,
        authors=authors,
        projects=projects,
        prep=prep,  # type: ignore[arg-type]
        train=train,
        deploy=deploy,
        predictions_per_deployment=100,
    )
