"""Tickets: what to do with a mask's kept (mask-1) and pruned (mask-0) weights."""

from ticketlab.tickets import mask0, mask1  # noqa: F401  (register the actions)
from ticketlab.tickets.actions import MASK0_ACTIONS, MASK1_ACTIONS, Action, mask0_action, mask1_action

__all__ = ["MASK0_ACTIONS", "MASK1_ACTIONS", "Action", "mask0_action", "mask1_action"]
