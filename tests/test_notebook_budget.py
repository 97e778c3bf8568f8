"""The notebook time budget is enforced: a slow notebook or a slow course is reported as over budget."""

from notebook_budget import over_budget


def test_within_budget():
    assert over_budget({"notebooks/01.ipynb": 10.0, "solutions/01.ipynb": 5.0}) == []


def test_a_slow_notebook_is_over_budget():
    problems = over_budget({"notebooks/02.ipynb": 95.0})
    assert problems == ["notebooks/02.ipynb took 95 s, more than 90 s"]
    assert over_budget({"notebooks/02.ipynb": 95.0}, scale=2) == []


def test_a_slow_course_is_over_budget():
    problems = over_budget({f"notebooks/{i:02d}.ipynb": 80.0 for i in range(5)}, course_size=8)
    assert problems == ["the notebooks took 400 s in all, more than 320 s (40 s for each of the course's 8 notebooks)"]
    assert over_budget({f"notebooks/{i:02d}.ipynb": 80.0 for i in range(5)}, course_size=10) == []


def test_the_course_budget_counts_the_course_notebooks():
    from notebook_budget import course_notebooks

    assert course_notebooks() >= 12
