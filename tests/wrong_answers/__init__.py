"""A library of wrong answers to the exercises, each paired with words its check's message must contain.

Each lesson's module defines WRONG: a list of (exercise name, wrong function, words the message must contain, kind).
The kind says what the entry tests:

- "classic": a classic mistake, named by its hint;
- "side effect": a function that changes what it was given (a tensor, a list, a module, a hook left behind);
- "uniform cases": code fitted to too few or too uniform cases (one rank, one d_head, float32 only, a lookup table);
- "coinciding sizes": a mistake that sizes chosen badly would confuse with another one;
- "crash": a value the check must not crash on (None from a print, a tuple where a number is expected, ...);
- "timer": a classic timer mistake, measured on a stand-in whose calls take known times;
- "form": a wrong answer in a form the checks accept (a list, numpy numbers, one sentence at a time, ...).
"""
