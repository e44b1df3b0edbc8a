"""Features: one row per measurement (``build``), the schedule's tiles (``tiles``), MetaSchedule's
program features (``program``), machine facts and analytical estimates (``machine``, ``estimates``)."""
