"""The pure core: rules, state and events in, decisions out. No I/O, no clock.

``evaluate`` decides a whole batch of events (``engine.evaluate``); the modules beside it
hold the pieces it is made of (rules in ``decide``, ``challenges``, ``streaks``,
``thresholds``, and ``funding`` for the rewards the points cover) and the core of boards,
budgets and lots.
"""

from engine.evaluate import BatchDecision, BatchState, EventOutcome, Standing, Status, evaluate

__all__ = ["BatchDecision", "BatchState", "EventOutcome", "Standing", "Status", "evaluate"]
