"""Scorers: judge an answer (or a query alone) and output a number in [0, 1]."""
