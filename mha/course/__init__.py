"""The course wing: the tools around the notebooks, for learners, instructors and maintainers.

exercises.py   generate exercises/ from solutions/ (never overwriting a learner's work), and check they match
grade.py       grade a folder of submitted exercise notebooks, one sub-folder per student, in parallel or in shards
sandbox.py     run one notebook's process sealed off (bubblewrap, else an unprivileged user), with limits
_seal.py       the first program of every sandbox: capped work area, no user namespaces, its own user
_runner.py     the notebook's side of grading: run its cells, then answer the grader's calls
wire.py        plain data between the two processes: JSON and .npy arrays on a pipe, sizes capped, never pickle
judging.py     what grading uses of the exercise checks: cases, the learner's half of a check, the verdict
trained.py     the lessons' trainings, run once per grading from the solutions, read back by every notebook
answers.py     answer cells compared without running them: with the course's solution, between students
report.py      the CSV, the summary, feedback per student, merging shards
doctor.py      check in seconds that an environment can run every lesson (a checkout, or a JupyterHub image)
release.py     the student release (the course without solutions/, on a branch) and its nbgitpuller links
collect.py     copy the students' exercise notebooks from a JupyterHub into submissions/<student>/
classroom.py   a whole class built from the course's own material, its expected results, and its grading measured
__main__.py    the command: `python -m mha.course exercises|grade|doctor|release|link|collect|class ...`
"""
