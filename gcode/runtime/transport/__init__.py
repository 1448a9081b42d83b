"""How calls and results travel between the coordinator and its workers."""
