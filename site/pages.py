"""What the course's site changes in the pages the theme writes: nothing run that needs the internet, and names for
the controls a screen reader would otherwise announce without one.

- Live code cells (Thebe) are off: their scripts, which would fetch Thebe from a CDN on demand, are left out of
  every page (the theme also wrote their set-up twice, a console error on every page).
- The chevrons that open and close a part of the table of contents are named (axe: summary-name), and the search
  button is named by what it shows, "Search Ctrl+K", and the colour-mode button's name holds the title of the icon
  it shows, "Light", "Dark" or "System Settings" (axe: label-content-name-mismatch; WCAG 2.5.3).
- The pages open in the light theme until the reader picks another (the theme's default, empty, is a console error).
"""

from pathlib import Path

FIXES = {  # what the theme writes: what the site writes instead
    '<summary><span class="toctree-toggle" role="presentation">': (
        '<summary aria-label="Show or hide the pages of this part"><span class="toctree-toggle" role="presentation">'
    ),
    'aria-label="Search" data-bs-placement="bottom"': 'data-bs-placement="bottom"',
    # the colour-mode button shows one icon, titled with the mode it is in: its name must hold every such title
    'aria-label="Color mode" data-bs-title="Color mode"': (
        'aria-label="Color mode: Light, Dark or System Settings" data-bs-title="Color mode"'
    ),
}


def _not_thebe(asset) -> bool:
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "thebe" not in (getattr(asset, "filename", "") or str(asset)).lower() and "THEBE" not in body


def drop_thebe(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if _not_thebe(asset)]


def light_by_default(app, config):
    config.html_context = {**config.html_context, "default_mode": "light"}


def name_controls(app, exception):
    if exception is None and app.builder.format == "html":
        for page in Path(app.outdir).rglob("*.html"):
            html = original = page.read_text()
            for theirs, ours in FIXES.items():
                html = html.replace(theirs, ours)
            if html != original:
                page.write_text(html)


def setup(app):
    app.connect("html-page-context", drop_thebe, priority=900)
    app.connect("config-inited", light_by_default)
    app.connect("build-finished", name_controls)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
