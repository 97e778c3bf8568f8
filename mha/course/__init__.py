"""The course wing: the tools around the notebooks, for learners, instructors and maintainers.

exercises.py   generate exercises/ from solutions/ (never overwriting a learner's work), and check they match
grade.py       grade a folder of submitted exercise notebooks, one sub-folder per student
doctor.py      check in seconds that an environment can run every lesson (a checkout, or a JupyterHub image)
release.py     the student release (the course without solutions/, on a branch) and its nbgitpuller links
collect.py     copy the students' exercise notebooks from a JupyterHub into submissions/<student>/
__main__.py    the command: `python -m mha.course exercises|grade|doctor|release|link|collect ...`
"""
