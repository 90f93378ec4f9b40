"""Studies (``llem -m``): llem's launcher and its job worker, the summary callback, the study
summary (scan / table / writers / plot) and ``llem reproduce``. The study's file names and records
are in :mod:`llem.records`."""
