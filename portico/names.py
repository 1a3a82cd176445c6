"""The one case-folding rule of names: ARM names (entities, resource groups) match ignoring case.

Every comparison, key and index of a name that ignores case uses `fold_name`, computed in Python:
SQLite's lower() folds ASCII only and PostgreSQL's depends on the database's collation, so neither
can be the rule. Unicode case folding (not lower()) makes every pair that differs only by case
equal, including those lower() keeps apart (the Greek final and medial sigma, German sharp s and 'SS')."""

from __future__ import annotations


def fold_name(name: str) -> str:
    return name.casefold()
