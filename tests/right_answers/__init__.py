"""A library of right answers to the exercises, written the ways learners do: each must pass its check.

Each lesson's module defines RIGHT: a list of (exercise name, right function). They differ from the solutions in
form (einsum, loops, torch.where, numpy, lists, numpy numbers, a model called one sentence at a time, ...), so that
a check that refuses a reasonable answer fails the tests.
"""
