"""Moved to `ticketlab.seeds` (seeding sits below experiments and supermasks); this alias
keeps code written against the old path importable until it is updated."""

from ticketlab.seeds import derived_seed, generator

__all__ = ["derived_seed", "generator"]
