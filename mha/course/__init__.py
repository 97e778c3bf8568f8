"""The course wing: the tools around the notebooks, for learners, instructors and maintainers.

exercises.py   generate exercises/ from solutions/ (never overwriting a learner's work), and check they match
grade.py       grade a folder of submitted exercise notebooks, one sub-folder per student
doctor.py      check in seconds that an environment can run the course
__main__.py    the command: `python -m mha.course exercises|grade|doctor ...`
"""
