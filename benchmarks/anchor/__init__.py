"""``make bench-anchor``: our backtest beside hftbacktest 2.4.4 on the same recording (see docs/bench-anchor.md).

:mod:`benchmarks.anchor.theirs` runs under a separate virtualenv with hftbacktest; :mod:`benchmarks.anchor.ours`
under the project's; :mod:`benchmarks.anchor.__main__` alternates the two and prints the table.
"""
