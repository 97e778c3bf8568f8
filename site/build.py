"""Build the course's website: the README as its home page, the course note, every lesson with its committed outputs,
the exercise notebooks, the instructor guide. Nothing is executed and nothing is fetched.

    python site/build.py [--out build/site] [--repo URL] [--branch main] [--hub URL] [--binder URL]

The pages are built by Jupyter Book 1 (Sphinx and MyST-NB) from a staged copy of the course, in which
- every figure of a lesson gets a text alternative: the first sentence the lesson says about it (the markdown right
  after the figure, or, where a new section starts there, the paragraph right before it);
- lesson 05's head explorer, a live widget, becomes the picture of its first view that the notebook saved, with a
  note that it is live in Jupyter (and the widgets' scripts, which come from a CDN, are left out);
- every lesson and exercise opens with its launch links: the JupyterHub link that `python -m mha.course link` builds
  (nbgitpuller), when a hub is given, and a Binder link (binder/ installs what `make setup` installs);
- a link to a file of the repository that is not a page of the site points at the repository (when --repo is given).
The repository, its branch, the hub and the Binder are settings (the Makefile's SITE_REPO, SITE_BRANCH, SITE_HUB,
SITE_BINDER), never written into the pages' sources.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from mha.course.release import nbgitpuller_link  # noqa: E402

TITLE = "Multi-head attention, from one head to many"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# markdown links, ](path) and ](path#anchor), outside code (a fenced block or a `span`, matched first and kept)
LINK = re.compile(r"(```.*?```|`[^`\n]*`)|\]\(([^)\s#]+)(#[^)\s]*)?\)", re.DOTALL)


def lessons() -> list[str]:
    return sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def exercises() -> list[str]:
    return sorted(p.name for p in (ROOT / "exercises").glob("[0-9][0-9]_*.ipynb") if ".fresh" not in p.name)


def pages() -> list[str]:
    """Every page of the site, as a path in the repository."""
    return [
        "README.md",
        "notebooks/COURSE_NOTE.md",
        *(f"notebooks/{name}" for name in lessons()),
        "exercises/README.md",
        *(f"exercises/{name}" for name in exercises()),
        "notebooks/INSTRUCTOR_GUIDE.md",
    ]


def _staged(path: str) -> str:
    return "index.md" if path == "README.md" else path


def rewrite_links(text: str, page: str, repo: str | None, branch: str) -> str:
    """Links to pages of the site stay; links to other files of the repository point at the repository."""
    in_site = {Path(p) for p in pages()}

    def fix(match):
        if match.group(1):
            return match.group(0)
        target, anchor = match.group(2), match.group(3) or ""
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            return match.group(0)
        resolved = Path(os.path.normpath(Path(page).parent / target))
        if resolved in in_site:
            if resolved == Path("README.md"):
                return f"]({os.path.relpath('index.md', Path(page).parent)}{anchor})"
            return match.group(0)
        return f"]({_repo_file(repo, branch, resolved)}{anchor})"

    return LINK.sub(fix, text)


def _repo_file(repo: str | None, branch: str, path: Path) -> str:
    if repo is None:
        raise SystemExit(
            f"a page links to {path}, which is not a page of the site: give the repository (SITE_REPO=URL) so that "
            "the link can point there"
        )
    return f"{repo.removesuffix('.git').rstrip('/')}/blob/{branch}/{path.as_posix()}"


MATH_WORDS = {
    r"\infty": "∞",
    r"\theta": "θ",
    r"\times": "×",
    r"\cdot": "·",
    r"\le": "≤",
    r"\ge": "≥",
    r"\approx": "≈",
    r"\sqrt": "√",
    r"\sum": "Σ",
    r"\to": "→",
    r"\,": " ",
    r"\!": "",
    r"\;": " ",
}


def _spoken_math(latex: str) -> str:
    """A formula as text a screen reader reads: d_{head} as d_head, \\infty as ∞, no braces or commands."""
    latex = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", latex)
    latex = re.sub(r"\\(?:mathrm|text|operatorname|mathbf|mathit)\{([^{}]*)\}", r"\1", latex)
    for command, word in sorted(MATH_WORDS.items(), key=lambda item: -len(item[0])):
        latex = latex.replace(command, word)
    latex = re.sub(r"\\([a-zA-Z]+)", r"\1", latex)  # any other command: its name
    return latex.replace("{", "").replace("}", "")


def _plain(markdown: str) -> str:
    """Markdown as text to read aloud: no emphasis, code marks, links or math delimiters."""
    text = re.sub(r"\$\$?([^$]+)\$\$?", lambda m: _spoken_math(m.group(1)), markdown)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", text, flags=re.MULTILINE)  # list markers
    text = re.sub(r"[*`]", "", text)
    return " ".join(text.split())


def _sentences(paragraphs: list[str], enough: int = 80, most: int = 400) -> str:
    """The first sentences of the paragraphs, while they are shorter than `enough` characters in all (a short first
    sentence, "Memory.", says little), and never a sentence that would take them past `most`."""
    said = ""
    for paragraph in paragraphs:
        for sentence in re.split(r"(?<=[.!?:])\s+", _plain(paragraph)):
            if said and len(said) + len(sentence) > most:
                return _ended(said)
            said = f"{said} {sentence}".strip()
            if len(said) >= enough and said.endswith((".", "!", "?")):
                return _ended(said)
    return _ended(said)


def _ended(text: str) -> str:
    text = text.rstrip(":")
    return text + ("" if text.endswith((".", "!", "?", ")")) else ".")


def _paragraphs(cell) -> list[str]:
    source = "".join(cell["source"])
    return [p for p in re.split(r"\n\s*\n", source) if p.strip() and not p.lstrip().startswith(("#", "<", "|", "```"))]


def alt_text(cells: list, index: int) -> str:
    """What the figure of cells[index] shows, in the lesson's words: the first sentences of the markdown right after
    it, or, where a heading opens that markdown (a new section), of the last paragraph before the figure."""
    after = next((c for c in cells[index + 1 :] if c["cell_type"] == "markdown"), None)
    if after is not None and not "".join(after["source"]).lstrip().startswith("#") and _paragraphs(after):
        return _sentences(_paragraphs(after))
    before = next((c for c in reversed(cells[:index]) if c["cell_type"] == "markdown" and _paragraphs(c)), None)
    if before is None:
        raise SystemExit(f"cell {index} shows a figure, but no sentence of the lesson describes it")
    return _sentences(_paragraphs(before)[-1:])


def _images(cell) -> int:
    return sum(1 for o in cell.get("outputs", []) if {"image/png", "image/svg+xml"} & set(o.get("data", {})))


def _widget_picture(notebook: dict) -> str | None:
    """The PNG the notebook saved for its widgets' Image (base64), or None."""
    state = notebook.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    for model in state.get("state", {}).values():
        if model.get("model_name") == "ImageModel":
            for buffer in model.get("buffers", []):
                if buffer.get("path") == ["value"]:
                    return buffer["data"]
    return None


def launch_cell(path: str, repo: str | None, branch: str, hub: str | None, binder: str | None) -> dict:
    links = []
    if hub and repo:
        links.append(f"[on your JupyterHub]({nbgitpuller_link(hub, repo, path, branch)})")
    if binder and repo:
        quoted = urllib.parse.quote(repo, safe="")
        urlpath = urllib.parse.quote(f"lab/tree/{path}", safe="")
        links.append(f"[on Binder]({binder.rstrip('/')}/v2/git/{quoted}/{branch}?urlpath={urlpath})")
    links.append("on your computer with `make lab`")
    text = "**Run this notebook:** " + " · ".join(links) + "."
    return {"cell_type": "markdown", "id": "site-launch", "metadata": {}, "source": text}


def stage_notebook(path: str, out: Path, settings: dict) -> dict:
    """Copy one notebook into the staged book; returns what was done to it (figures given a text alternative...)."""
    notebook = json.loads((ROOT / path).read_text())
    cells = notebook["cells"]
    counts = {"figures": 0, "widgets": 0}
    picture = _widget_picture(notebook)
    notebook["metadata"].pop("widgets", None)  # the widgets' saved state needs their scripts, from a CDN
    for index, cell in enumerate(list(cells)):
        if cell["cell_type"] == "markdown":
            cell["source"] = rewrite_links("".join(cell["source"]), path, settings["repo"], settings["branch"])
            continue
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                kept.append(output)
                continue
            shown = data.get("text/plain", "")
            shown = "".join(shown) if isinstance(shown, list) else shown
            if not shown.startswith("HeadExplorer("):
                continue  # a progress bar (tqdm): live while the cell runs, nothing to read afterwards
            if picture is None:
                raise SystemExit(f"{path}: a head explorer, and no picture of it saved in the notebook")
            del data[WIDGET_VIEW]
            data["image/png"] = picture
            kept.append(output)
            counts["widgets"] += 1
            cell.setdefault("metadata", {})["site_note"] = (
                "*Live in Jupyter.* The head explorer is a live widget: a sentence menu and layer and head sliders, "
                "redrawn as you move them when the notebook runs in Jupyter. Here it is a picture of the view the "
                f"lesson saved, `{shown}`."
            )
        if "outputs" in cell:
            cell["outputs"] = kept
        if _images(cell):
            counts["figures"] += _images(cell)
            mystnb = cell.setdefault("metadata", {}).setdefault("mystnb", {})
            mystnb.setdefault("image", {}).setdefault("alt", alt_text(cells, index))
    # notes under widgets, as markdown cells of their own
    staged = []
    for cell in cells:
        staged.append(cell)
        note = cell.get("metadata", {}).pop("site_note", None)
        if note:
            staged.append({"cell_type": "markdown", "id": "site-widget-note", "metadata": {}, "source": note})
    # the launch links right under the notebook's title, before anything else
    launch = launch_cell(path, settings["repo"], settings["branch"], settings["hub"], settings["binder"])
    first = "".join(staged[0]["source"]) if staged and staged[0]["cell_type"] == "markdown" else ""
    if first.startswith("# "):
        title, _, rest = first.partition("\n")
        staged[0]["source"] = f"{title}\n\n{launch['source']}\n\n{rest.lstrip()}"
    else:
        staged.insert(0, launch)
    notebook["cells"] = staged
    (out / path).parent.mkdir(parents=True, exist_ok=True)
    (out / path).write_text(json.dumps(notebook, indent=1, ensure_ascii=False))
    return counts


def stage(out: Path, settings: dict) -> dict:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    counts = {"pages": 0, "figures": 0, "widgets": 0}
    for path in pages():
        counts["pages"] += 1
        if path.endswith(".ipynb"):
            for key, value in stage_notebook(path, out, settings).items():
                counts[key] += value
        else:
            text = rewrite_links((ROOT / path).read_text(), path, settings["repo"], settings["branch"])
            (out / _staged(path)).parent.mkdir(parents=True, exist_ok=True)
            (out / _staged(path)).write_text(text)
    toc = {
        "format": "jb-book",
        "root": "index",
        "parts": [
            {
                "caption": "Lessons",
                "chapters": [{"file": "notebooks/COURSE_NOTE"}]
                + [{"file": f"notebooks/{Path(name).stem}"} for name in lessons()],
            },
            {
                "caption": "Exercises",
                "chapters": [
                    {
                        "file": "exercises/README",
                        "sections": [{"file": f"exercises/{Path(name).stem}"} for name in exercises()],
                    }
                ],
            },
            {"caption": "Teaching", "chapters": [{"file": "notebooks/INSTRUCTOR_GUIDE"}]},
        ],
    }
    (out / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    config = yaml.safe_load((SITE / "_config.yml").read_text())
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for extension in ("mathml.py", "pages.py"):
        shutil.copy(SITE / extension, out / extension)
    shutil.copytree(SITE / "static", out / "_static")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python site/build.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="where the HTML goes")
    parser.add_argument("--repo", default="", help="the course's repository URL (links to files, launch links)")
    parser.add_argument("--branch", default="main", help="its branch (default main)")
    parser.add_argument("--hub", default="", help="a JupyterHub's address, for the nbgitpuller links (optional)")
    parser.add_argument("--binder", default="https://mybinder.org", help="a BinderHub (default mybinder.org)")
    args = parser.parse_args(argv)
    ssh = re.match(r"^[\w.-]+@([\w.-]+):(.+)$", args.repo)  # git's origin, when cloned over ssh
    if ssh:
        args.repo = f"https://{ssh.group(1)}/{ssh.group(2)}"
    for name in ("repo", "hub", "binder"):
        value = getattr(args, name)
        if value and not re.match(r"^https?://[^\s/]+", value):
            parser.error(f"--{name}: expected an http(s) URL, got {value!r}")
    settings = {"repo": args.repo or None, "branch": args.branch, "hub": args.hub or None, "binder": args.binder}
    start = time.monotonic()
    staging = args.out.parent / f"{args.out.name}-src"
    counts = stage(staging, settings)
    built = args.out.parent / f"{args.out.name}-build"
    jb = Path(sys.executable).parent / "jupyter-book"
    build = [str(jb), "build", str(staging), "--path-output", str(built), "--warningiserror", "--quiet"]
    subprocess.run(build, check=True)
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.move(built / "_build" / "html", args.out)
    shutil.rmtree(built)
    print(
        f"site: {counts['pages']} pages, {counts['figures']} figures with a text alternative, "
        f"{counts['widgets']} widget shown as a picture, in {time.monotonic() - start:.0f} s: "
        f"open {args.out / 'index.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
