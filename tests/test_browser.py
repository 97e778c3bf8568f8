"""A learner's session in a real browser: `make lab`, then headless Chromium driven by Selenium.

Lesson 01 is run whole and shows no error; lesson 05's head explorer renders as a live widget that fits a laptop
screen and redraws when a slider moves; exercise 01 answered wrongly shows its check's ✗ message. JupyterLab is
the one `make lab` starts, with the course's configuration (jupyter/): the course's kernel first in the Launcher,
no news pop-up, no websocket ping warning in the server log.

Needs Chromium and its driver (Debian: `apt-get install -y chromium chromium-driver`); skipped, saying so, where
they are missing, except in CI (CI=true), where a missing browser fails the run. The server serves a copy of the
lessons and exercises, so nothing the browser runs or types is saved over the repository's files; it is stopped
and its port checked free afterwards, whatever happened, and so are the kernels it started.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DISPLAY_NAME = "Python (mha course)"
TOKEN = "browser-test-token"
SCREEN = (1366, 768)  # a common laptop screen, in CSS pixels
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # Chromium refuses to start as root without it
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # without these, Chromium keeps calling home, and a closed network answers with floods of refused connections
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={SCREEN[0]},{SCREEN[1]}",
]
INSTALL_HINT = "apt-get install -y chromium chromium-driver"


def _browser_paths():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "Selenium is not installed (make setup installs it from requirements.txt)"
    if not (chromium and driver):
        return None, f"no Chromium here: the browser test needs `{INSTALL_HINT}` (Debian)"
    return (chromium, driver), ""


PATHS, WHY_NOT = _browser_paths()
if PATHS is None:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the browser test, but: {WHY_NOT}")
    pytest.skip(f"SKIPPED the browser test: {WHY_NOT}", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    """True when nothing listens on the port. Bound as servers bind (SO_REUSEADDR): the connections the stopped
    server closed linger in TIME_WAIT for a minute, and they do not stop a new server from listening there."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _processes_mentioning(text: str) -> list[int]:
    """Process ids whose command line contains `text` (the kernels of this server name its runtime folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class Lab:
    """A JupyterLab started by `make lab` on a free loopback port, serving a copy of the course."""

    def __init__(self, folder: Path):
        self.course = folder / "course"
        for name in ("notebooks", "exercises"):
            shutil.copytree(ROOT / name, self.course / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        self.runtime = folder / "runtime"
        self.log_path = folder / "lab.log"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            JUPYTER_TOKEN=TOKEN,
            JUPYTER_RUNTIME_DIR=str(self.runtime),  # kernels' connection files: how we find them afterwards
            JUPYTER_CONFIG_DIR=str(folder / "user-config"),  # the user's own ~/.jupyter plays no part
            JUPYTERLAB_SETTINGS_DIR=str(folder / "user-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(folder / "workspaces"),
        )
        args = f"--no-browser --ip=127.0.0.1 --port={self.port} --ServerApp.port_retries=0"
        args += f" --ServerApp.root_dir={self.course}"
        self._log = open(self.log_path, "w")  # a file, not a pipe: a full pipe would stall the server
        self.proc = subprocess.Popen(
            ["make", "lab", f"LAB_ARGS={args}"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: make and the server stop together
        )

    def wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while _status(f"{self.base}/api/status?token={TOKEN}") != 200:
            assert self.proc.poll() is None, f"make lab stopped early:\n{self.log()}"
            assert time.monotonic() < deadline, f"JupyterLab did not answer within {seconds:.0f} s:\n{self.log()}"
            time.sleep(0.5)

    def api(self, path: str):
        with urllib.request.urlopen(f"{self.base}/api/{path}?token={TOKEN}", timeout=10) as response:
            return json.load(response)

    def url(self, path: str, workspace: str) -> str:
        # one fresh workspace per document: the page shows that document alone
        return f"{self.base}/lab/workspaces/{workspace}/tree/{path}?token={TOKEN}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the server and every kernel it started; raise if its port stays taken."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        for pid in _processes_mentioning(str(self.runtime)):  # a kernel left behind by a killed server
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
        deadline = time.monotonic() + 10
        while not _port_is_free(self.port):
            assert time.monotonic() < deadline, f"port {self.port} is still taken after the server stopped"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("lab"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
    assert not _processes_mentioning(str(server.runtime)), "a kernel outlived the server"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = PATHS
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")  # a fresh profile
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


# What the page shows, read with JavaScript: Selenium's .text skips what is scrolled out of view.
PANEL = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')"


def _js(driver, body: str, *args):
    return driver.execute_script(f"const panel = {PANEL}; if (!panel) return null; {body}", *args)


def _wait(driver, seconds: float, condition, what: str):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.5).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"waited {seconds:.0f} s for {what}") from None


def _open_notebook(driver, lab: Lab, path: str, workspace: str) -> None:
    """Open a notebook and wait until the course's kernel is idle in it."""
    driver.get(lab.url(path, workspace))
    _wait(driver, 90, lambda d: _js(d, "return panel.querySelectorAll('.jp-Cell').length"), f"{path} to open")

    seen = {}

    def kernel_ready(d):
        seen["kernel"], seen["status"] = d.execute_script(
            "const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');"
            "const name = p && p.querySelector('.jp-KernelName');"
            "const status = p && p.querySelector('.jp-Notebook-ExecutionIndicator');"
            "return [name && name.textContent.trim(), status && status.getAttribute('data-status')]"
        )
        dialog = d.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
        if dialog:  # JupyterLab asks for a kernel when the notebook's own is not installed
            raise AssertionError(
                f"{path}: JupyterLab asked to choose a kernel ({dialog[0].text[:200]!r}): is the course's kernel "
                f"'{KERNEL_DISPLAY_NAME}' installed? (make setup installs it)"
            )
        if seen["status"] == "idle" and seen["kernel"] not in (None, "", "No Kernel", KERNEL_DISPLAY_NAME):
            raise AssertionError(  # JupyterLab fell back on another kernel, one without the course's setup
                f"{path} runs in the kernel {seen['kernel']!r}, not '{KERNEL_DISPLAY_NAME}': is the course's "
                f"kernel installed? (make setup installs it)"
            )
        return seen["kernel"] == KERNEL_DISPLAY_NAME and seen["status"] == "idle"

    try:
        _wait(driver, 120, kernel_ready, f"the kernel '{KERNEL_DISPLAY_NAME}' to be idle in {path}")
    except AssertionError as error:
        shown = f"the notebook shows kernel {seen.get('kernel')!r}, status {seen.get('status')!r}"
        raise AssertionError(f"{error}; {shown}") from None


def _menu(driver, menu: str, command: str) -> None:
    """Click a command in a menu of the menu bar, as a learner does."""
    driver.find_element(By.XPATH, f"//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='{menu}']").click()
    item = _wait(
        driver,
        10,
        lambda d: d.find_elements(By.CSS_SELECTOR, f".lm-Menu-item[data-command='{command}']"),
        f"the {menu} menu",
    )
    item[0].click()


def _run_all(driver) -> None:
    """Edit > Clear Outputs of All Cells, then Run > Run All Cells: every prompt then shows this run's count."""
    _menu(driver, "Edit", "editmenu:clear-all")
    _wait(driver, 10, lambda d: not any(p.strip("[]: ") for p in _prompts(d)), "the outputs to be cleared")
    _menu(driver, "Run", "runmenu:run-all")


def _prompts(driver) -> list[str]:
    return _js(driver, "return [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent)")


def _wait_all_run(driver, seconds: float, what: str) -> None:
    def done(d):
        prompts = _prompts(d)
        return bool(prompts) and all(p.strip().startswith("[") and p.strip()[1:-2].isdigit() for p in prompts)

    try:
        _wait(driver, seconds, done, f"every cell of {what} to run")
    except AssertionError as error:
        raise AssertionError(f"{error}; the prompts show {_prompts(driver)}") from None


def _error_outputs(driver) -> list[str]:
    return _js(
        driver,
        "return [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]')]"
        ".map(e => e.textContent.slice(0, 300))",
    )


def test_the_launcher_offers_the_course_kernel_first_and_no_news_pop_up(lab, browser):
    assert lab.api("kernelspecs")["default"] == "mha-course"
    browser.get(f"{lab.base}/lab/workspaces/launcher?token={TOKEN}")
    cards = _wait(
        browser,
        90,
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('.jp-LauncherCard[data-category=\"Notebook\"]')]"
            ".map(e => e.getAttribute('title') || e.textContent.trim())"
        ),
        "the Launcher's notebook cards",
    )
    assert KERNEL_DISPLAY_NAME in cards[0], f"the Launcher's first notebook is {cards[0]!r}, not the course's kernel"
    time.sleep(3)  # the news question would come a moment after the page
    toasts = browser.execute_script("return [...document.querySelectorAll('.Toastify__toast')].map(e => e.textContent)")
    assert not [t for t in toasts if "news" in t.lower()], f"JupyterLab asked about news: {toasts}"


def test_lesson_01_runs_whole_without_an_error(lab, browser):
    _open_notebook(browser, lab, "notebooks/01_attention_from_scratch.ipynb", "lesson01")
    _run_all(browser)
    _wait_all_run(browser, 180, "lesson 01")
    assert _error_outputs(browser) == [], "lesson 01 shows an error"
    # a kernel's websocket is open now: tornado would have warned about its ping settings by this time
    assert "websocket_ping_timeout" not in lab.log(), "the server log has the websocket ping warning"


def test_lesson_05_head_explorer_is_a_live_widget_that_fits_the_screen(lab, browser):
    _open_notebook(browser, lab, "notebooks/05_heads_in_a_real_model.ipynb", "lesson05")
    _run_all(browser)
    _wait_all_run(browser, 300, "lesson 05")
    assert _error_outputs(browser) == [], "lesson 05 shows an error"
    explorer = _js(
        browser,
        "const img = panel.querySelector('.jp-OutputArea-output .widget-image');"
        "if (!img) return null; const box = img.closest('.widget-vbox');"
        "box.scrollIntoView(); return box;",
    )
    if explorer is None:
        as_text = _js(browser, "return panel.textContent.includes('HeadExplorer(layer=')")
        hint = " (it shows as text: is the widget extension, jupyterlab_widgets, installed and enabled?)"
        raise AssertionError("the head explorer is not rendered as a widget" + (hint if as_text else ""))
    picture = explorer.find_element(By.CSS_SELECTOR, ".widget-image")
    _wait(browser, 30, lambda d: picture.get_attribute("src"), "the explorer's picture")
    height = browser.execute_script("return arguments[0].getBoundingClientRect().height", explorer)
    assert height <= 600, f"the explorer is {height:.0f} px tall: it must fit in 600 px, controls and picture together"
    shown, natural = browser.execute_script("return [arguments[0].clientWidth, arguments[0].naturalWidth]", picture)
    assert abs(shown - natural) <= 1, f"the picture is stretched from {natural} to {shown} px"
    sliders = explorer.find_elements(By.CSS_SELECTOR, ".widget-slider")
    assert [s.find_element(By.CSS_SELECTOR, ".widget-label").text for s in sliders] == ["layer", "head"]
    head, readout = sliders[1], sliders[1].find_element(By.CSS_SELECTOR, ".widget-readout")
    before_value, before_picture = readout.text, picture.get_attribute("src")
    head.find_element(By.CSS_SELECTOR, ".noUi-handle").send_keys(Keys.ARROW_RIGHT)
    _wait(browser, 10, lambda d: readout.text != before_value, "the head slider to move")
    assert int(readout.text) == int(before_value) + 1
    _wait(browser, 30, lambda d: picture.get_attribute("src") != before_picture, "the picture to change")


def test_exercise_01_shows_the_check_message_for_a_wrong_answer(lab, browser):
    _open_notebook(browser, lab, "exercises/01_attention_from_scratch.ipynb", "exercise01")
    code_cells = _js(browser, "return [...panel.querySelectorAll('.jp-CodeCell')]")
    imports, scores = code_cells[0], code_cells[1]
    assert "lesson01 as check" in imports.get_attribute("textContent")
    imports.find_element(By.CSS_SELECTOR, ".cm-content").click()
    imports.find_element(By.CSS_SELECTOR, ".cm-content").send_keys(Keys.SHIFT, Keys.ENTER)
    editor = scores.find_element(By.CSS_SELECTOR, ".cm-content")
    editor.click()
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.DELETE)
    # the classic mistake: dividing by d_head instead of its square root
    editor.send_keys("scores = lambda q, k: q @ k.transpose(-2, -1) / q.shape[-1]", Keys.ENTER, "check.scores(scores)")
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    output = scores.find_element(By.CSS_SELECTOR, ".jp-Cell-outputArea")
    message = _wait(
        browser, 60, lambda d: "✗" in (text := output.get_attribute("textContent")) and text, "the check's message"
    )
    assert "divide by its square root" in message, message


def test_run_all_in_an_exercise_notebook_shows_every_exercise_s_state(lab, browser):
    # each exercise cell carries the tag raises-exception (mha.course.exercises): a failing check shows its ✗ and
    # Run All goes on, so a learner who opens the notebook and runs it all sees where every exercise stands
    _open_notebook(browser, lab, "exercises/03_many_heads.ipynb", "exercise03")
    _run_all(browser)
    _wait_all_run(browser, 180, "exercise 03")
    messages = _js(
        browser,
        "return [...panel.querySelectorAll('.jp-CodeCell')].slice(1).map(c => c.querySelector('.jp-Cell-outputArea')"
        ".textContent)",
    )
    assert len(messages) == 6 and all("✗" in m and "not written yet" in m for m in messages), messages
