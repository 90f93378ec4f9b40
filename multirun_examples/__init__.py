"""The study files of multirun_examples/, shipped inside the package as ``llem.multirun_examples``
(data only: ``llem examples`` copies them into a folder of the user's)."""
