"""Config field types shared by experiments: validated lists whose errors are one line.

Use them as field annotations, e.g. `Ns: PositiveInts = Field([20, 40], description="...")`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


def _increasing(v: list) -> list:
    if any(b <= a for a, b in zip(v, v[1:])):
        raise ValueError("values must be strictly increasing")
    return v


def _unit_interval(v: list[float]) -> list[float]:
    if any(not 0 <= x < 1 for x in v):
        raise ValueError("every value must be in [0, 1)")
    return v


PositiveInts = Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]
PositiveFloats = Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]
IncreasingPositiveInts = Annotated[PositiveInts, AfterValidator(_increasing)]
UnitIntervalFloats = Annotated[list[float], Field(min_length=1), AfterValidator(_unit_interval)]

__all__ = ["PositiveInts", "PositiveFloats", "IncreasingPositiveInts", "UnitIntervalFloats"]
