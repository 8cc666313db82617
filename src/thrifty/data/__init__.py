"""Data files: the routing table (prompts × models → quality, answer, tokens, cost) and its file
layout, prompts files, the outcomes log, and the line-numbered row reader they all share."""
