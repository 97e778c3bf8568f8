"""A Sphinx math renderer that writes MathML when the site is built: the pages need no MathJax and fetch nothing.

Chromium, Firefox and Safari draw MathML themselves, and screen readers read it. A formula latex2mathml cannot
convert stops the build, naming the page and the formula, rather than showing raw LaTeX.
"""

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.errors import ExtensionError


def _mathml(self, node, display: str) -> str:
    latex = node.astext()
    try:
        return convert(latex, display=display)
    except Exception as error:  # latex2mathml raises its own exceptions, one per kind of bad input
        raise ExtensionError(
            f"{self.docnames[-1] if hasattr(self, 'docnames') else node.source}: "
            f"cannot write {latex!r} as MathML ({type(error).__name__}: {error})"
        ) from error


def visit_math(self, node):
    self.body.append(f'<span class="math">{_mathml(self, node, "inline")}</span>')
    raise nodes.SkipNode


def visit_displaymath(self, node):
    # focusable: a wide formula scrolls sideways, and a keyboard must be able to scroll it (WCAG 2.1.1)
    self.body.append(f'<div class="math" tabindex="0">{_mathml(self, node, "block")}</div>')
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
