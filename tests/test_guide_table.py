"""The instructor guide's "Lessons at a glance" table says what the notebooks say: minutes and exercises."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "notebooks" / "INSTRUCTOR_GUIDE.md").read_text()
ROW = re.compile(r"^\| (\d\d) \| [^|]+ \|[^|]+\| (\d+) min \| (\d+) min \((\d+) exercises\) \|$", re.MULTILINE)


def _cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


def _lessons():
    return sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("lesson", _lessons())
def test_the_guide_quotes_each_lessons_minutes_and_exercises(lesson):
    rows = {m.group(1): m.groups()[1:] for m in ROW.finditer(GUIDE)}
    assert lesson in rows, f"the guide's table has no row for lesson {lesson}"
    lesson_minutes, exercise_minutes, count = (int(x) for x in rows[lesson])
    [notebook] = (ROOT / "notebooks").glob(f"{lesson}_*.ipynb")
    said = re.findall(r"About (\d+) minutes", _cells(notebook)[0])
    assert said and int(said[0]) == lesson_minutes, f"lesson {lesson} opens with 'About {said} minutes'"
    [solution] = (ROOT / "solutions").glob(f"{lesson}_*.ipynb")
    parts = [h for c in _cells(solution) for h in re.split(r"(?m)^(?=## Exercise \d)", c)]
    headers = [h for h in parts if h.startswith("## Exercise")]
    minutes = sum(int(re.search(r"About (\d+) minutes", h).group(1)) for h in headers)
    assert (count, exercise_minutes) == (len(headers), minutes), (
        f"lesson {lesson}: the guide says {count} exercises, {exercise_minutes} min; the solutions hold "
        f"{len(headers)} exercises whose headers add up to {minutes} min"
    )
