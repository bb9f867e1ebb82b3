"""Moved below the services: ``rewards.program_context``; the names stay here for the
modules that import them from here."""

from rewards.program_context import ProgramContext, program_context
from rewards.program_settings import DEFAULT_MAX_POINTS_PER_EVENT

__all__ = ["DEFAULT_MAX_POINTS_PER_EVENT", "ProgramContext", "program_context"]
