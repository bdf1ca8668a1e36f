"""The greedy soup's selection (pure): which ingredients are kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GreedyStep:
    """One candidate soup the greedy recipe tried: the kept ingredients plus one."""

    candidate: tuple[int, ...]
    accuracy: float
    kept: bool


@dataclass(frozen=True)
class GreedySoup:
    individual: tuple[float, ...]  # each ingredient's own accuracy, in the order given
    order: tuple[int, ...]  # ingredients by decreasing individual accuracy (ties: as given)
    kept: tuple[int, ...]  # in the order they were added
    accuracy: float  # the kept soup's validation accuracy
    steps: tuple[GreedyStep, ...]


def greedy_select(
    individual: Sequence[float], soup_accuracy: Callable[[tuple[int, ...]], float]
) -> GreedySoup:
    """Greedy soup (Wortsman et al. 2022, Recipe 1): ingredients sorted by decreasing
    ``individual`` accuracy; the soup starts as the best one; each next ingredient is added when
    ``soup_accuracy(kept + (it,))`` (the accuracy of the uniform mean of those ingredients) is
    strictly higher than the soup's so far. Returns the order, the kept ingredients and every
    step."""
    if not individual:
        raise ValueError("no ingredient to select from")
    order = tuple(sorted(range(len(individual)), key=lambda i: -individual[i]))
    kept, best = (order[0],), float(individual[order[0]])
    steps = []
    for i in order[1:]:
        candidate = (*kept, i)
        accuracy = float(soup_accuracy(candidate))
        better = accuracy > best
        steps.append(GreedyStep(candidate, accuracy, better))
        if better:
            kept, best = candidate, accuracy
    return GreedySoup(tuple(map(float, individual)), order, kept, best, tuple(steps))
