"""Load models for serving mode: the ``load`` config group and seeded arrival schedules."""
