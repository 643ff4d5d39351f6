"""The command path moved to `herald/infra/aggregates.py` (it is infrastructure every layer uses).

This name re-exports it for the branches that still import it from here; new code imports
`herald.infra.aggregates`. Delete this module once no branch does.
"""

from herald.infra.aggregates import Aggregates, CommandContext, Loaded, Outcome

__all__ = ["Aggregates", "CommandContext", "Loaded", "Outcome"]
