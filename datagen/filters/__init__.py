"""Verdicts on records. Filters are pure: a record (or text) in, a Verdict out."""
