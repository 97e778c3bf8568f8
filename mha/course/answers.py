"""A notebook's answers, read from its text without running anything, in the grader's own process.

What the notebook's own process reports about itself can be forged; what is read here cannot be hidden by code
that runs (it may be hidden by code the grader cannot read: text built and run at run time, `exec` of a computed
string, a name computed with `getattr`).

- The answer to an exercise is the code its function's name is bound to, as the notebook defines it: `def scores`,
  `scores = other_function`, `scores = lambda ...`, `globals()["scores"] = ...`, `globals().update(scores=...)`,
  `setattr(module, "scores", ...)`, or such a statement given to `exec` as plain text; the last binding wins.
- Answers are compared by a normalised syntax tree: comments, spacing, docstrings, annotations, the function's own
  name and the names of its local variables do not count; the functions of the notebook it calls are part of it.
  So an answer is compared with the course's solution, and between students, however it is renamed or documented.
- Names bound to the course's own code are followed through imports (`import mha`, `from mha import attention as
  a`), attributes (`mha.masks.causal_mask`), `functools.partial`, `__import__` and `importlib.import_module`:
  an answer that *is* the course's code, and the course functions an answer *calls*.

Every cell is parsed at most once, cells over MAX_CELL characters and code past MAX_CODE characters in all are not
parsed (they count as text), so that no notebook can make the grader slow or large.
"""

import ast
import copy
import hashlib
import importlib
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import exercises as generation

MARKER = generation.BEGIN
MAX_CELL = 64 << 10  # characters of one code cell that are parsed (the course's largest answer cell: about 1,000)
MAX_CODE = 512 << 10  # characters of a notebook's code parsed in all (the course's exercise notebooks: 2,000)
MAX_DEPTH = 10  # functions of the notebook followed from an answer (it calls a helper, which calls ...)
_TOOLS = ("mha.checks", "mha.course")  # the course's tools, not its implementation
_NAMESPACES = ("globals", "vars", "locals")

# CPython 3.11 keeps ast.parse's recursion depth in state shared by threads: two notebooks parsed at once by the
# grader's --jobs threads can fail with "SystemError: AST constructor recursion depth mismatch". One parse at a time,
# ours and everyone's in the grader's process (3.11's traceback parses the failing line to underline it).
_PARSE = threading.RLock()
_AST_PARSE = ast.parse


def _parse(source: str) -> ast.Module:
    with _PARSE:
        return _AST_PARSE(source)


def _one_at_a_time(*args, **kwargs):
    with _PARSE:
        return _AST_PARSE(*args, **kwargs)


def parse_one_at_a_time() -> None:
    """Make every `ast.parse` of this process (the standard library's too) wait for the one before: called by the
    grader before it starts grading notebooks in several threads."""
    ast.parse = _one_at_a_time


def code_cells(text: str) -> list[str]:
    """The sources of a notebook's code cells; ValueError if the text is not a notebook."""
    nb = json.loads(text)
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("it has no list of cells")
    out = []
    for c in nb["cells"]:
        if isinstance(c, dict) and c.get("cell_type") == "code":
            source = c.get("source", "")
            out.append("".join(map(str, source)) if isinstance(source, list) else str(source))
    return out


@dataclass
class Answer:
    """What the grader reads of one exercise's answer in a notebook's text.

    Attributes:
        digest: a short hash of the answer's normalised code ("" if it is not found in the text).
        body: the same for the function alone, blind to its name (compared with every function of a notebook).
        origin: the course's own object the answer is, e.g. "mha.attention.attention" (None if it is not).
        uses: the course's objects the answer's code refers to, e.g. {"mha.heads.split_heads"}.
    """

    digest: str = ""
    body: str = ""
    origin: str | None = None
    uses: set[str] = field(default_factory=set)


class Code:
    """A notebook's code cells, parsed once within a budget, and what its names are bound to.

    Args:
        cells: the sources of its code cells.
    """

    def __init__(self, cells: list[str]):
        self.cells = cells
        self.bindings: dict[str, tuple[str, object]] = {}  # name -> ("def"|"value"|"course"|"module", what)
        self.functions: list[ast.AST] = []  # every function defined anywhere, for comparison with a solution
        self.unread = False  # some code could not be parsed (too large, or not Python)
        self.dynamic = False  # it runs code or binds names the grader cannot read (exec of a computed string, ...)
        self._budget = MAX_CODE
        for source in cells:
            tree = self._read(source)
            if tree is not None:
                self._statements(tree.body, 0)

    def _read(self, source: str) -> ast.Module | None:
        if len(source) > MAX_CELL or len(source) > self._budget:
            self.unread = True
            return None
        self._budget -= len(source)
        try:
            return _parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            self.unread = True
            return None

    # ------------------------------------------------------------------------------------------ bindings

    def _statements(self, body: list, depth: int) -> None:
        for node in body:
            if isinstance(node, ast.If | ast.For | ast.While | ast.With | ast.Try):
                for part in ("body", "orelse", "finalbody"):
                    self._statements(getattr(node, part, []), depth)
                for handler in getattr(node, "handlers", []):
                    self._statements(handler.body, depth)
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                    self.functions.append(inner)
                elif isinstance(inner, ast.Import | ast.ImportFrom):
                    self._import(inner)  # an import anywhere binds its name somewhere: taken as global
                elif isinstance(inner, ast.Call):
                    self._call(inner, depth)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.bindings[node.name] = ("def", node)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    self._assign(target, node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None:
                self._assign(node.target, node.value)

    def _import(self, node) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.bindings[alias.asname] = _module_binding(alias.name)
                else:
                    top = alias.name.split(".")[0]
                    self.bindings[top] = _module_binding(top)
            return
        if node.level or not node.module:
            return
        for alias in node.names:
            if alias.name == "*":
                module = sys.modules.get(node.module) if node.module.split(".")[0] == "mha" else None
                for name in dir(module) if module is not None else ():
                    value = getattr(module, name, None)
                    if not name.startswith("_") and _is_course(getattr(value, "__module__", None)):
                        self.bindings[name] = ("course", f"{node.module}.{name}")
                continue
            qualified = f"{node.module}.{alias.name}"
            self.bindings[alias.asname or alias.name] = _module_binding(qualified)

    def _assign(self, target, value) -> None:
        if isinstance(target, ast.Name):
            self.bindings[target.id] = ("value", value)
        elif isinstance(target, ast.Tuple | ast.List) and isinstance(value, ast.Tuple | ast.List):
            if len(target.elts) == len(value.elts):
                for t, v in zip(target.elts, value.elts):
                    self._assign(t, v)
        elif isinstance(target, ast.Subscript) and _is_namespace(target.value):
            key = _constant_text(target.slice)
            if key is None:
                self.dynamic = True
            else:
                self.bindings[key] = ("value", value)
        elif isinstance(target, ast.Attribute) and _is_module_expression(target.value):
            self.bindings[target.attr] = ("value", value)

    def _call(self, node: ast.Call, depth: int) -> None:
        name = _called_name(node.func)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "update" and _is_namespace(node.func.value):
            for keyword in node.keywords:
                if keyword.arg is None:
                    self.dynamic = True
                else:
                    self.bindings[keyword.arg] = ("value", keyword.value)
            for arg in node.args:
                if isinstance(arg, ast.Dict):
                    for key, value in zip(arg.keys, arg.values):
                        text = _constant_text(key) if key is not None else None
                        if text is None:
                            self.dynamic = True
                        else:
                            self.bindings[text] = ("value", value)
                else:
                    self.dynamic = True
        elif name == "setattr" and len(node.args) == 3:
            text = _constant_text(node.args[1])
            if text is None:
                self.dynamic = True
            else:
                self.bindings[text] = ("value", node.args[2])
        elif name in ("exec", "eval", "compile") and node.args:
            text = _constant_text(node.args[0])
            if isinstance(node.args[0], ast.Call) and _called_name(node.args[0].func) == "compile":
                text = _constant_text(node.args[0].args[0]) if node.args[0].args else None
            if text is None:
                self.dynamic = True
            elif depth < 3:
                tree = self._read(text)
                if tree is not None:
                    self._statements(tree.body, depth + 1)
        elif name in ("__import__", "import_module") and node.args and _constant_text(node.args[0]) is None:
            self.dynamic = True

    # ------------------------------------------------------------------------------------------ resolving

    def resolve(self, expr, seen: frozenset = frozenset()) -> tuple[str, object] | None:
        """What an expression is bound to: ("course", qualified name), ("def", node), ("value", node) or None."""
        if len(seen) > MAX_DEPTH:
            return None
        if isinstance(expr, str) or isinstance(expr, ast.Name):
            name = expr if isinstance(expr, str) else expr.id
            if name in seen or name not in self.bindings:
                return None
            kind, what = self.bindings[name]
            if kind == "value":
                return self.resolve(what, seen | {name}) or ("value", what)
            return kind, what
        if isinstance(expr, ast.Attribute):
            base = self.resolve(expr.value, seen)
            if base is not None and base[0] in ("course", "module"):
                return base[0], f"{base[1]}.{expr.attr}"
            return None
        if isinstance(expr, ast.Call):
            name = _called_name(expr.func)
            if name in ("partial", "staticmethod", "classmethod", "wraps") and expr.args:
                return self.resolve(expr.args[0], seen)
            if name in ("__import__", "import_module") and expr.args:
                text = _constant_text(expr.args[0])
                return _module_binding(text) if text else None
            return None
        if isinstance(expr, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            return "def", expr
        return None

    def answer(self, function: str) -> Answer:
        """The answer bound to `function` (an empty Answer if the text does not bind it)."""
        found = self.resolve(function)
        if found is None:
            return Answer()
        kind, what = found
        if kind in ("course", "module"):
            origin = canonical(what) if kind == "course" else None
            return Answer(digest=_hash(f"{kind}:{what}"), origin=origin if _is_course(origin) else None)
        node = what
        helpers, uses = self._reach(node)
        parts = [_normalised(node)] + sorted(_normalised(h) for h in helpers)
        uses = {u for u in uses if _is_course(u)}
        origin = None
        if kind == "value":  # not code of the notebook's own (a def, a lambda), but made from the course's?
            direct = sorted(canonical(q) for _, q in _references(node, self) if q is not None)
            origin = next((q for q in direct if _is_course(q)), None)
        return Answer(digest=_hash("\n".join(parts)), body=_hash(_normalised(node)), origin=origin, uses=uses)

    def _reach(self, node) -> tuple[list, set[str]]:
        """The notebook's functions an answer reaches through the names it uses, and the course objects it uses."""
        helpers, uses, todo, seen = [], set(), [node], {id(node)}
        while todo and len(helpers) < 50:
            current = todo.pop()
            for name, qualified in _references(current, self):
                if qualified is not None:
                    uses.add(canonical(qualified))
                    continue
                found = self.resolve(name)
                if found and found[0] == "def" and id(found[1]) not in seen and len(seen) <= MAX_DEPTH * 5:
                    seen.add(id(found[1]))
                    helpers.append(found[1])
                    todo.append(found[1])
                elif found and found[0] == "course":
                    uses.add(canonical(found[1]))
        return helpers, uses

    def bodies(self) -> set[str]:
        """The name-blind digest of every function the notebook defines (to find a renamed copy of a solution)."""
        return {_hash(_normalised(f)) for f in self.functions[:2000]}


def _module_binding(qualified: str) -> tuple[str, str]:
    return ("course" if qualified == "mha" or qualified.startswith("mha.") else "module", qualified)


def _is_course(qualified: str | None) -> bool:
    return bool(qualified) and (qualified == "mha" or qualified.startswith("mha.")) and not qualified.startswith(_TOOLS)


def _is_namespace(expr) -> bool:
    """`globals()`, `vars()`, `locals()`, or `sys.modules[...].__dict__`."""
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in _NAMESPACES:
        return True
    return isinstance(expr, ast.Attribute) and expr.attr == "__dict__" and _is_module_expression(expr.value)


def _is_module_expression(expr) -> bool:
    """`__main__`, `builtins`, `sys.modules[...]`: a module the notebook's names live in, or every module sees."""
    if isinstance(expr, ast.Name):
        return expr.id in ("__main__", "builtins", "__builtins__", "main")
    return isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Attribute) and expr.value.attr == "modules"


def _called_name(func) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _constant_text(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _references(node, code: Code):
    """(name, None) for each global name a function's code uses, (name, qualified) where it is the course's."""
    bound = _bound_names(node)
    stack = list(ast.iter_child_nodes(node))
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Attribute):
            found = code.resolve(current)
            if found and found[0] == "course":
                yield current.attr, found[1]
                continue
        elif isinstance(current, ast.Name) and isinstance(current.ctx, ast.Load) and current.id not in bound:
            yield current.id, None
            continue
        stack.extend(ast.iter_child_nodes(current))


def _bound_names(node) -> set[str]:
    """Names bound inside a function (its arguments, local variables, nested functions), in any nested scope."""
    names = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.arg):
            names.add(inner.arg)
        elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store | ast.Del):
            names.add(inner.id)
        elif isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and inner is not node:
            names.add(inner.name)
        elif isinstance(inner, ast.ExceptHandler) and inner.name:
            names.add(inner.name)
        elif isinstance(inner, ast.alias) and inner is not node:
            names.add((inner.asname or inner.name).split(".")[0])
    return names


def _course_module(name: str):
    """The course's module of that name, imported if it is not yet, so that a name means the same whatever this
    process imported before; None if the course has no such module (or it is a command's `__main__`)."""
    if name in sys.modules:
        return sys.modules[name]
    if "__main__" in name.split("."):
        return None
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - not a module of the course (or one that cannot be imported here)
        return None


def canonical(qualified: str) -> str:
    """The course object's own name: `mha.attention` -> "mha.attention.attention"; the deepest course function,
    class or module along the way (`mha.attention.__code__` -> "mha.attention.attention"); as written if none."""
    parts = qualified.split(".")
    obj, found = sys.modules.get("mha"), None
    if obj is None or parts[0] != "mha":
        return qualified
    found = "mha"
    for depth in range(2, len(parts) + 1):
        # the package's attribute first: `mha.attention` is the function the package exports, not its module
        obj = getattr(obj, parts[depth - 1], None) or _course_module(".".join(parts[:depth]))
        if obj is None:
            break
        module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if isinstance(obj, type(sys)):
            found = obj.__name__
        elif isinstance(module, str) and isinstance(name, str) and _is_course(module):
            found = f"{module}.{name}"
        else:
            break
    return found if found != "mha" or qualified == "mha" else qualified


class _Normalise(ast.NodeTransformer):
    """Docstrings and annotations out, local names numbered in order of appearance."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def _body(self, node):
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        return node

    def visit_FunctionDef(self, node):
        node.name = self.names.get(node.name, "_")
        node.returns = None
        self._body(node)
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node.name = self.names.get(node.name, node.name)
        self._body(node)
        return self.generic_visit(node)

    def visit_arg(self, node):
        node.arg = self.names.get(node.arg, node.arg)
        node.annotation = None
        return node

    def visit_Name(self, node):
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_ExceptHandler(self, node):
        if node.name:
            node.name = self.names.get(node.name, node.name)
        return self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if node.value is None:
            return None
        return self.generic_visit(ast.Assign(targets=[node.target], value=node.value, lineno=0))


def _normalised(node) -> str:
    """A function (or any code) as its normalised syntax tree, blind to its own name."""
    order: dict[str, int] = {}
    for index, inner in enumerate(ast.walk(node)):
        for name in (getattr(inner, "id", None), getattr(inner, "arg", None), getattr(inner, "name", None)):
            if isinstance(name, str):
                order.setdefault(name, index)
    bound = sorted(_bound_names(node), key=lambda name: (order.get(name, 1 << 30), name))
    names = {name: f"_{i}" for i, name in enumerate(bound)}
    tree = _Normalise(names).visit(copy.deepcopy(node))
    if isinstance(tree, ast.FunctionDef | ast.AsyncFunctionDef):
        tree.name = "_"
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


# ------------------------------------------------------------------------------------------ the course's own


@dataclass(frozen=True)
class Reference:
    """The course's side of one exercise: its solution's answer and its exercise stub, read as students' are."""

    solution: str  # the answer's digest
    stub: str
    body: str  # the solution's function alone, blind to its name
    uses: frozenset  # course objects the solution itself uses (calling them is no news)

    def __getitem__(self, index: int) -> str:  # (solution, stub), as a pair
        return (self.solution, self.stub)[index]


def solutions_notebook(root: Path, lesson: str) -> Path | None:
    """The course folder's solutions notebook of a lesson (the first by name), or None if it has none."""
    found = sorted((Path(root) / "solutions").glob(f"{lesson}_*.ipynb"))
    return found[0] if found else None


@lru_cache(maxsize=32)
def course_answers(root: Path, lesson: str) -> dict[str, Reference] | None:
    """For each learner function of a lesson, the course's `Reference`.

    None if the course folder has no solution notebook for the lesson (an installed package without the notebooks).
    """
    path = solutions_notebook(root, lesson)
    if path is None:
        return None
    import nbformat

    importlib.import_module("mha")
    solution = nbformat.read(path, as_version=4)
    exercise = generation.make_exercise(solution, path.name)
    solved = Code([c.source for c in solution.cells if c.cell_type == "code"])
    stubbed = Code([c.source for c in exercise.cells if c.cell_type == "code"])
    out = {}
    for source in (c.source for c in solution.cells if c.cell_type == "code"):
        if MARKER not in source:
            continue
        for name in re.findall(r"^def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", source, re.M):
            theirs, stub = solved.answer(name), stubbed.answer(name)
            out[name] = Reference(theirs.digest, stub.digest, theirs.body, frozenset(theirs.uses))
    return out


def is_solutions_notebook(code: Code, cells: list[str], functions: list[str], course: dict | None) -> bool:
    """True for the course's own solutions notebook handed in: its markers, and every answer the solution's."""
    if not course or not functions or not any(MARKER in source for source in cells):
        return False
    return all(f in course and code.answer(f).digest == course[f].solution for f in functions)


# ------------------------------------------------------------------ the course's own, shipped with the package

FINGERPRINTS = Path(__file__).with_name("fingerprints.json")  # the course's `Reference`s, for an installed package


_HEADER = re.compile(
    r"^#+ Exercise (\d+) · (.+)\n\*\*Difficulty\*\* (★*)☆* · \*\*Importance\*\* (★*)☆* · \*\*About (\d+) minutes\*\*",
    re.MULTILINE,
)


def exercise_headers(path: Path) -> dict[str, dict]:
    """function -> its exercise's header (number, title, difficulty and importance in stars, minutes), in order."""
    import nbformat

    out, header = {}, None
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            found = _HEADER.findall(cell.source)
            if found:
                number, title, difficulty, importance, minutes = found[-1]
                header = {"number": int(number), "title": title.strip(), "difficulty": len(difficulty)}
                header.update(importance=len(importance), minutes=int(minutes))
        elif MARKER in cell.source and header:
            for name in re.findall(r"^def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", cell.source, re.M):
                out.setdefault(name, header)
    return out


def fingerprints(root: Path) -> dict:
    """Every lesson's `Reference`s, read from the solutions at `root`, as the plain data `fingerprints.json` holds,
    with each exercise's header (its importance weighs it in `python -m mha.course marks`).

    Hashes only (and the names of course functions a solution calls): nothing of a solution can be read back from it.
    """
    out = {}
    for path in sorted((Path(root) / "solutions").glob("[0-9][0-9]_*.ipynb")):
        lesson = path.name[:2]
        references = course_answers.__wrapped__(Path(root), lesson) or {}  # read now, never a cached copy
        out[lesson] = {
            "notebook": path.name,
            "answers": {
                name: {"solution": r.solution, "stub": r.stub, "body": r.body, "uses": sorted(r.uses)}
                for name, r in sorted(references.items())
            },
            "headers": exercise_headers(path),
        }
    return out


def fingerprints_text(root: Path) -> str:
    return json.dumps(fingerprints(root), indent=1, sort_keys=True) + "\n"


def write_fingerprints(root: Path) -> tuple[Path, bool]:
    """Write `mha/course/fingerprints.json` under `root` from its solutions (`make exercises`); (path, changed)."""
    path = Path(root) / "mha" / "course" / FINGERPRINTS.name
    text = fingerprints_text(root)
    if path.exists() and path.read_text() == text:
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path, True


def fingerprint_problems(root: Path) -> list[str]:
    """Why `mha/course/fingerprints.json` under `root` is not what its solutions give (empty: in sync)."""
    path = Path(root) / "mha" / "course" / FINGERPRINTS.name
    if not path.exists():
        return [f"{path.relative_to(root)} is missing"]
    if path.read_text() != fingerprints_text(root):
        return [f"{path.relative_to(root)} differs from what solutions/ give"]
    return []


@lru_cache(maxsize=1)
def _shipped() -> dict:
    try:
        return json.loads(FINGERPRINTS.read_text())
    except (OSError, ValueError):
        return {}


def shipped_answers(lesson: str) -> dict[str, Reference] | None:
    """The course's `Reference`s of a lesson as the package ships them (None if it ships none for the lesson)."""
    entry = _shipped().get(lesson)
    if not entry:
        return None
    return {
        name: Reference(r["solution"], r["stub"], r["body"], frozenset(r["uses"]))
        for name, r in entry["answers"].items()
    }


def shipped_headers(lesson: str) -> dict[str, dict]:
    """function -> its exercise's header (number, title, difficulty, importance, minutes), as the package ships it."""
    return (_shipped().get(lesson) or {}).get("headers", {})


def shipped_notebooks() -> set[str]:
    """The names the course gives its exercise notebooks, as the package ships them."""
    return {entry["notebook"] for entry in _shipped().values()}
