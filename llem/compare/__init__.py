"""``llem compare A B [C ...]``: is B better than A? Runs, study jobs and studies, side by side.

:mod:`~llem.compare.inputs` reads the folders and pairs runs (study jobs by their swept keys),
:mod:`~llem.compare.facts` lists the config keys and environment facts that differ,
:mod:`~llem.compare.difference` computes 95% intervals of the ratio B/A,
:mod:`~llem.compare.verdict` turns them into words, :mod:`~llem.compare.report` prints and writes
``compare.{md,json}`` and :mod:`~llem.compare.command` is the command line.
"""
