"""What every benchmark returns: a figure beside the baseline measured in the same run."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Result:
    name: str
    ours: float
    baseline: float | None
    unit: str
    baseline_name: str = ""
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline or not self.ours:
            return None
        return self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours
