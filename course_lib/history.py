"""What a training run logged, in a module of its own below the loop (``train.py``) and the cache
(``checkpoints.py``), which both use it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class History:
    """What a training run logged: one value per step for the loss and each metric."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_by_budget: bool = False
    images: int = 0  # images drawn from the loader (before any augmentation or copies a step makes)
    snapshots: list[dict] = field(default_factory=list)  # {"steps", "images"} where a copy of the backbone was kept

    @property
    def losses(self) -> list[float]:
        return self.metrics.get("loss", [])

    @property
    def steps(self) -> int:
        return len(self.losses)

    def final(self, name: str = "loss", last: int = 20) -> float:
        """The mean of the last ``last`` logged values of ``name``: the course's one "final loss"."""
        values = self.metrics.get(name)
        if not values:
            raise ValueError(f"no values logged for {name!r} (logged: {sorted(self.metrics)})")
        if isinstance(last, bool) or not isinstance(last, int) or last < 1:
            raise ValueError(f"last must be a positive int, got {last!r}")
        tail = values[-last:]
        return sum(tail) / len(tail)

    def compute(self) -> dict:
        """What the run cost: images drawn, optimiser steps, wall-clock seconds."""
        return {"images": self.images, "steps": self.steps, "seconds": round(self.seconds, 1)}

    def as_dict(self) -> dict:
        return {"metrics": self.metrics, "seconds": self.seconds, "stopped_by_budget": self.stopped_by_budget,
                "images": self.images, "snapshots": [dict(s) for s in self.snapshots]}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(metrics={k: list(v) for k, v in d["metrics"].items()}, seconds=float(d["seconds"]),
                   stopped_by_budget=bool(d["stopped_by_budget"]), images=int(d.get("images", 0)),
                   snapshots=[{"steps": int(s["steps"]), "images": int(s["images"])} for s in d.get("snapshots", [])])
