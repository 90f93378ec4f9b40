"""Study summary of a multirun sweep: one table of every job, rebuilt as jobs end (see
:mod:`llem.study.summary`)."""
