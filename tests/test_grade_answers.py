"""What the grader reads of a notebook's answers in its own process, from the text, where no notebook can hide it.

Answers are found however they are bound (a def, an alias, `globals().update`, `setattr`, text given to `exec`),
compared by a normalised syntax tree (docstrings, annotations, local names and the function's own name do not
count), and followed to the course's own code (imports, attributes, `functools.partial`, a copied code object).
"""

import json
import time

import pytest
from grading import FUNCTIONS, LESSON01, answer

from mha.course import answers, grade, judging
from mha.course.exercises import ROOT

SOLUTION = {
    name: cell.split("\n\n\ncheck.")[0]
    for cell in (
        "".join(c["source"])
        for c in json.loads((ROOT / "solutions" / LESSON01).read_text())["cells"]
        if c["cell_type"] == "code"
    )
    for name in FUNCTIONS
    if cell.startswith(f"def {name}(")
}


def _answer(*cells: str, function: str = "scores") -> answers.Answer:
    return answers.Code(["import math\nimport torch", *cells]).answer(function)


def test_an_answer_is_found_however_its_name_is_bound():
    mine = answer("scores")
    expected = _answer(mine).digest
    renamed = mine.replace("def scores(", "def _mine(")
    for binding in (
        "scores = _mine",
        "globals().update(scores=_mine)",
        "globals().update({'scores': _mine})",
        "globals()['scores'] = _mine",
        "import sys\nsetattr(sys.modules[__name__], 'scores', _mine)",
    ):
        assert _answer(renamed, binding).digest == expected, binding
    assert _answer(f"exec({mine!r})").digest == expected, "text given to exec is read too"
    assert _answer("name = 'sc' + 'ores'\nglobals()[name] = len").digest == ""
    assert answers.Code(["globals()['sc' + 'ores'] = len"]).dynamic, "a name the grader cannot read is noted"


def test_docstrings_annotations_and_local_names_do_not_hide_a_copy_of_the_solution():
    reference = answers.course_answers(ROOT, "01")["scores"]
    solution = SOLUTION["scores"]
    documented = solution.replace("):\n", '):\n    """Scores of every query against every key."""\n', 1)
    annotated = documented.replace("def scores(q, k)", "def scores(query: torch.Tensor, key: torch.Tensor) -> object")
    annotated = annotated.replace("q @ k", "query @ key").replace("q.shape", "query.shape")
    for copy in (solution, documented, annotated):
        assert _answer(copy).digest == reference.solution, copy
    hidden = answers.Code([annotated.replace("def scores(", "def _helper("), "globals().update(scores=_helper)"])
    assert reference.body in hidden.bodies()
    assert _answer(answer("scores")).digest != reference.solution, "an answer of one's own differs"


def test_an_answer_made_of_the_courses_own_code_is_found_through_imports_partial_and_copies():
    cases = {
        "import mha\nscores = mha.attention": "mha.attention.attention",
        "from mha import attention as scores": "mha.attention.attention",
        "import functools, mha.masks as m\nscores = functools.partial(m.causal_mask)": "mha.masks.causal_mask",
        "scores = __import__('mha').masked_softmax": "mha.attention.masked_softmax",
        "import importlib\nscores = importlib.import_module('mha.masks').padding_mask": "mha.masks.padding_mask",
        "import types, mha\nscores = types.FunctionType(mha.attention.__code__.replace(co_filename='x'), {})": (
            "mha.attention.attention"
        ),
    }
    for cell, origin in cases.items():
        assert _answer(cell).origin == origin, cell
    wrapper = "import mha\ndef scores(q, k):\n    return helper(q, k)\n"
    wrapper += "def helper(q, k):\n    return mha.attention(q, k, k)"
    found = _answer(wrapper)
    assert found.origin is None and found.uses == {"mha.attention.attention"}, "a wrapper calls it, through a helper"
    checked = _answer("from mha.checks import lesson01 as check\n" + answer("scores") + "\ncheck.scores(scores)")
    assert checked.uses == set(), "the checks are the course's tools, not its implementation"


def test_a_course_function_the_lessons_own_solution_calls_is_no_flag():
    reference = answers.course_answers(ROOT, "08")["local_forward"]
    assert "mha.heads.split_heads" in reference.uses
    found = answers.Answer(digest="x", uses={"mha.heads.split_heads", "mha.heads.merge_heads"})
    said = {"calls": ["mha.heads.split_heads"]}
    assert grade._course_flags(found, said, reference, "08", False) == []
    shard = answers.course_answers(ROOT, "08")["shard_rank"]
    found = answers.Answer(digest="y", uses={"mha.parallel.shard.shard"})
    assert grade._course_flags(found, {}, shard, "08", False) == ["calls the course's own mha.parallel.shard.shard"]


def test_a_huge_cell_is_not_parsed_and_costs_the_grader_neither_time_nor_memory():
    import tracemalloc

    huge = "x = [" + "0, " * 1_400_000 + "]"  # 4 MB: parsing it took a minute and 2 GB with --jobs 2
    tracemalloc.start()
    started = time.monotonic()
    code = answers.Code([huge, answer("scores")])
    found = code.answer("scores")
    seconds, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert found.digest and code.unread
    assert seconds < 2 and peak < 64 << 20, (seconds, peak)


def test_the_grader_waits_for_one_case_its_checks_limit_and_no_more(monkeypatch):
    exercise = judging.lesson_exercises("01")[0]
    monkeypatch.delenv("MHA_CHECK_TIME_LIMIT", raising=False)
    assert judging.time_allowed(exercise) == exercise.time_limit + judging.SLACK
    monkeypatch.setenv("MHA_CHECK_TIME_LIMIT", "3")
    assert judging.time_allowed(exercise) == 3 + judging.SLACK


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_honest_answer_is_read_and_none_is_flagged(function):
    code = answers.Code(["import math\nimport torch", *[answer(f) for f in FUNCTIONS]])
    found = code.answer(function)
    assert found.digest and found.origin is None and found.uses == set()
    reference = answers.course_answers(ROOT, "01")[function]
    assert found.digest not in (reference.solution, reference.stub)


def test_the_solutions_notebook_is_still_recognised():
    cells = answers.code_cells((ROOT / "solutions" / LESSON01).read_text())
    theirs = answers.course_answers(ROOT, "01")
    assert answers.is_solutions_notebook(answers.Code(cells), cells, FUNCTIONS, theirs)
    exercise = answers.code_cells((ROOT / "exercises" / LESSON01).read_text())
    assert not answers.is_solutions_notebook(answers.Code(exercise), exercise, FUNCTIONS, theirs)


def test_with_several_jobs_every_ast_parse_of_the_grader_waits_for_the_one_before(monkeypatch):
    # CPython 3.11's ast.parse keeps its recursion depth in state threads share: any parse running beside another
    # (ours, or the one 3.11's traceback makes to underline a line) can fail with "AST constructor recursion depth
    # mismatch". With --jobs above 1 the grader makes every parse of its process wait for the one before.
    import ast
    import threading
    import time

    from mha.course import answers

    active, most = [0], [0]
    lock = threading.Lock()

    def slow_parse(*args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return ast.Module(body=[], type_ignores=[])

    monkeypatch.setattr(answers, "_AST_PARSE", slow_parse)
    monkeypatch.setattr(ast, "parse", slow_parse)  # the standard library's, as other code calls it (put back after)
    answers.parse_one_at_a_time()
    threads = [threading.Thread(target=lambda: [ast.parse("x = 1") for _ in range(5)]) for _ in range(4)]
    threads += [threading.Thread(target=lambda: [answers._parse("y = 2") for _ in range(5)]) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1, f"{most[0]} parses ran at once"
