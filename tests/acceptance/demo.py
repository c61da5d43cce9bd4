"""What the demo acceptance tests share: the demo warehouse and its population health run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from joinedup.population.pipeline import PhmResult


@dataclass(frozen=True)
class DemoWarehouse:
    path: Path
    phm: PhmResult
