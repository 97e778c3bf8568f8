"""A library of classic wrong answers to the exercises, each paired with the hint its check must give.

Each lesson's module defines WRONG: a list of (exercise name, wrong function, words the hint must contain).
"""
