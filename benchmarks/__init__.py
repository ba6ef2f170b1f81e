"""`make bench`: every ``benchmarks/bench_*.py`` module's ``run()`` returns rows; they print as one table.

A row is a dict: ``name`` (what), ``value`` (number), ``unit``, and optionally ``target`` (text such as
">= 200000") and ``note``. Ratios measured in the same run are preferred over absolute times: the machines are
shared and noisy.
"""
