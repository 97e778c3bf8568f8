"""The course's website in a real browser: `site/build.py` (what `make site` runs), then every page in Chromium.

Each page loads with no console error and no failed request, asks nothing of any host but the site's own, shows every
image, each with a text alternative that is a sentence (not a file name), has its headings in order and its math
drawn (MathML, laid out by the browser), and its internal links resolve (the page, and the anchor on it). The search
finds a word of lesson 09. axe-core (site/package.json, `npm ci --prefix site`) finds no serious or critical
violation on any page. A page with a figure without a text alternative fails the same check.

Needs Chromium and its driver, as tests/test_browser.py does; skipped, saying so, where they or axe-core are missing,
except in CI (CI=true), where that fails the run.
"""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "site" / "node_modules" / "axe-core" / "axe.min.js"
REPO = "https://git.example.org/course/mha-course.git"  # the settings the pages are built with in this test
HUB = "https://hub.example.edu"
SEARCH_WORD = "sinusoidal"  # a word of lesson 09


def _missing() -> str:
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        return "no Chromium here: the site's test needs `apt-get install -y chromium chromium-driver` (Debian)"
    if not AXE.exists():
        return f"no axe-core: run `npm ci --prefix site` (it installs {AXE.relative_to(ROOT)})"
    return ""


WHY_NOT = _missing()
if WHY_NOT:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the site's browser test, but: {WHY_NOT}")
    pytest.skip(f"SKIPPED the site's browser test: {WHY_NOT}", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "html"
    command = [sys.executable, str(ROOT / "site" / "build.py"), "--out", str(out), "--repo", REPO, "--hub", HUB]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1366,768",
        # no host but the site's: a page that asks for anything from the internet gets a failed request
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def _requests(driver) -> tuple[list[str], list[str]]:
    """(every URL the page asked for, every failure: a request that failed or was answered 400 or more)."""
    urls, failures = [], []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls.append(params["request"]["url"])
        elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            failures.append(f"request failed: {params.get('errorText')} ({params.get('type')})")
        elif message["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            failures.append(f"{params['response']['status']} for {params['response']['url']}")
    return urls, failures


PAGE_FACTS = """
const article = document.querySelector('main') || document.body;
return {
  images: [...document.images].map(i => ({src: i.getAttribute('src'), alt: i.getAttribute('alt'),
                                          loaded: i.complete && i.naturalWidth > 0,
                                          hidden: i.getAttribute('aria-hidden') === 'true'})),
  headings: [...article.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => Number(h.tagName[1])),
  // formulas on show (not those of a closed <details>, a hint, or of a heading in a table of contents hidden at
  // this width); a browser that does not lay MathML out gives them no height
  math: [...document.querySelectorAll('math')].filter(m => m.parentElement.checkVisibility())
                                              .map(m => m.getBoundingClientRect().height),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
};
"""

AXE_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
  where: v.nodes.slice(0, 2).map(n => n.target.join(' '))}))));
"""


def page_problems(driver, url: str, site: Path, base: str) -> tuple[list[str], dict]:
    """Everything wrong with one page, as sentences, and what was counted on it."""
    driver.get_log("performance")  # forget the previous page's requests
    driver.get_log("browser")
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    facts = driver.execute_script(PAGE_FACTS)
    problems = [f"console: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    urls, failures = _requests(driver)
    problems += failures
    problems += [f"asks a host other than the site's: {u}" for u in urls if not u.startswith((base, "data:"))]
    for image in facts["images"]:
        if not image["loaded"]:
            problems.append(f"image does not load: {image['src']}")
        alt = (image["alt"] or "").strip()
        if not image["hidden"] and (len(alt.split()) < 3 or alt.endswith((".png", ".svg")) or "_images/" in alt):
            problems.append(f"image without a text alternative (a sentence): {image['src']} alt={image['alt']!r}")
    levels = facts["headings"]
    if levels and levels[0] != 1:
        problems.append(f"the first heading is h{levels[0]}, not h1")
    problems += [f"heading h{b} right after h{a}" for a, b in zip(levels, levels[1:]) if b > a + 1]
    problems += [f"a formula is not drawn (height {h})" for h in facts["math"] if h <= 0]
    links = 0
    for link in facts["links"]:
        if not link.startswith(base):
            continue
        links += 1
        parsed = urllib.parse.urlparse(link)
        target = site / urllib.parse.unquote(parsed.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"link to a missing page: {link}")
        elif parsed.fragment and target.suffix == ".html":
            html = target.read_text(errors="replace")
            if f'id="{parsed.fragment}"' not in html and f'id="{urllib.parse.unquote(parsed.fragment)}"' not in html:
                problems.append(f"link to a missing anchor: {link}")
    driver.execute_script(AXE.read_text())
    violations = driver.execute_async_script(AXE_RUN)
    problems += [
        f"axe {v['impact']}: {v['id']} ({v['help']}) on {v['nodes']} element(s), e.g. {v['where']}"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
    counts = {"images": len(facts["images"]), "links": links, "math": len(facts["math"])}
    counts["axe"] = {v["impact"]: 0 for v in violations}
    for v in violations:
        counts["axe"][v["impact"]] += v["nodes"]
    return problems, counts


def test_every_page(site, server, browser):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)
    assert len(pages) >= 26, f"expected every page of the course, found {pages}"
    found, totals = {}, {"pages": len(pages), "images": 0, "links": 0, "math": 0, "axe": {}}
    for page in pages:
        problems, counts = page_problems(browser, f"{server}/{page}", site, server)
        if problems:
            found[page] = problems
        for key in ("images", "links", "math"):
            totals[key] += counts[key]
        for impact, n in counts["axe"].items():
            totals["axe"][impact] = totals["axe"].get(impact, 0) + n
    print(f"\nsite checked: {totals}")
    assert not found, "\n".join(f"{page}:\n  " + "\n  ".join(p) for page, p in found.items())
    assert totals["math"] > 0 and totals["images"] >= 68, totals


def test_search_finds_lesson_09(server, browser):
    browser.get(f"{server}/search.html?q={SEARCH_WORD}")
    hits = WebDriverWait(browser, 60).until(
        lambda d: d.execute_script(
            "const a = [...document.querySelectorAll('#search-results a')].map(a => a.href);return a.length ? a : null"
        )
    )
    assert any("notebooks/09_positions.html" in h for h in hits), hits


def test_lesson_pages_launch(site):
    html = (site / "notebooks" / "01_attention_from_scratch.html").read_text()
    assert "hub.example.edu/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgit.example.org" in html
    assert "notebooks%2F01_attention_from_scratch.ipynb" in html
    assert "mybinder.org/v2/git/https%3A%2F%2Fgit.example.org%2Fcourse%2Fmha-course.git/main" in html
    explorer = (site / "notebooks" / "05_heads_in_a_real_model.html").read_text()
    assert "Live in Jupyter." in explorer and "widget-view" not in explorer


def test_a_figure_without_text_alternative_fails(site, server, browser, tmp_path):
    """The check itself: a copy of lesson 01's page whose first figure has lost its text alternative is refused."""
    page = site / "notebooks" / "01_attention_from_scratch.html"
    broken = page.with_name("broken.html")
    html = page.read_text()
    start = html.index("<img alt=")
    end = html.index('"', html.index('"', start) + 1)
    broken.write_text(html[:start] + '<img alt="../_images/figure.png' + html[end:])
    try:
        problems, _ = page_problems(browser, f"{server}/notebooks/broken.html", site, server)
    finally:
        broken.unlink()
    assert any("without a text alternative" in p for p in problems), problems
