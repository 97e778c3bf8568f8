"""`python -m mha.course collect` against a small stand-in for a JupyterHub's REST API (the real hub: tests/hub/)."""

import json
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mha.course import collect
from mha.course.__main__ import main as course

TOKEN = "collect-token"
NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'


class FakeHub(BaseHTTPRequestHandler):
    """Users and their servers' files, as a hub and its single-user servers show them."""

    homes: dict = {}  # user -> {path: (text, last_modified)}
    listed: dict = {}  # user -> more names their server lists in the exercises folder (a hostile server's)
    running: set = set()
    started: list = []

    def log_message(self, *args):
        pass

    def _send(self, status, payload=None):
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _user(self, name):
        servers = {"": {"url": f"/user/{name}/", "ready": True}} if name in self.running else {}
        return {"name": name, "kind": "user", "servers": servers}

    def _handle(self, method):
        if self.headers.get("Authorization") != f"token {TOKEN}":
            return self._send(403, {"message": "Action is not authorized with current scopes"})
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:3] == ["hub", "api", "users"] and len(parts) == 3:
            items = [self._user(n) for n in sorted(self.homes)]
            return self._send(200, {"items": items, "_pagination": {"offset": 0, "limit": 200, "total": len(items)}})
        if parts[:3] == ["hub", "api", "users"] and len(parts) == 4:
            return self._send(200, self._user(parts[3]))
        if parts[:3] == ["hub", "api", "users"] and parts[4:] == ["server"]:
            if method == "POST":
                self.running.add(parts[3])
                self.started.append(parts[3])
            else:
                self.running.discard(parts[3])
            return self._send(201 if method == "POST" else 204)
        if parts[0] == "user" and parts[2:4] == ["api", "contents"]:
            name, path = parts[1], "/".join(parts[4:])
            if name not in self.running:
                return self._send(503, {"message": "server not running"})
            files = self.homes[name]
            if path in files:
                text, saved = files[path]
                return self._send(200, {"content": text, "format": "text", "last_modified": saved})
            inside = [p for p in files if p.startswith(path + "/") and "/" not in p[len(path) + 1 :]]
            if not inside:
                return self._send(404, {"message": "No such file or directory"})
            entries = [
                {"name": p.rsplit("/", 1)[1], "type": "notebook" if p.endswith(".ipynb") else "file"} for p in inside
            ]
            entries += [{"name": n, "type": "notebook"} for n in self.listed.get(name, [])]
            return self._send(200, {"type": "directory", "content": entries})
        return self._send(404, {"message": "not found"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")


@pytest.fixture()
def hub(monkeypatch):
    ex = "mha-course/exercises"
    FakeHub.homes = {
        "ada": {
            f"{ex}/01_attention_from_scratch.ipynb": (NOTEBOOK, "2026-03-01T10:00:00.000000Z"),
            f"{ex}/03_many_heads.ipynb": (NOTEBOOK.replace("[]", "[ ]", 1), "2026-03-01T11:00:00Z"),
            f"{ex}/01_attention_from_scratch.fresh.ipynb": (NOTEBOOK, "2026-03-01T10:00:00Z"),
            f"{ex}/notes.txt": ("mine", "2026-03-01T10:00:00Z"),
        },
        "bob": {f"{ex}/01_attention_from_scratch.ipynb": ("{}\n", "2026-03-02T09:30:00Z")},
        "teacher": {"other/file.txt": ("x", "2026-03-01T10:00:00Z")},
    }
    FakeHub.running, FakeHub.started, FakeHub.listed = {"ada", "teacher"}, [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MHA_COLLECT_TOKEN", TOKEN)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_collects_every_exercise_notebook_into_the_graders_layout(hub, tmp_path, capsys):
    out = tmp_path / "submissions"
    assert course(["collect", "--hub", hub, str(out)]) == 0
    printed = capsys.readouterr().out
    collected = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert collected == ["ada/01_attention_from_scratch.ipynb", "ada/03_many_heads.ipynb"]
    assert (out / "ada/01_attention_from_scratch.ipynb").read_text() == NOTEBOOK  # byte for byte
    assert os.path.getmtime(out / "ada/03_many_heads.ipynb") == 1772362800.0  # when ada last saved it
    assert "server not running (use --start" in printed and "no mha-course/exercises/" in printed
    assert FakeHub.started == []


def test_one_lessons_notebooks_only(hub, tmp_path):
    out = tmp_path / "submissions"
    assert course(["collect", "--hub", hub, "--lesson", "03", str(out)]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.ipynb")) == ["ada/03_many_heads.ipynb"]
    with pytest.raises(SystemExit):
        course(["collect", "--hub", hub, "--lesson", "3", str(out)])


def test_start_collects_from_stopped_servers_and_stops_them_again(hub, tmp_path):
    out = tmp_path / "submissions"
    assert course(["collect", "--hub", hub, "--start", "--student", "bob", str(out)]) == 0
    assert (out / "bob/01_attention_from_scratch.ipynb").read_text() == "{}\n"
    assert FakeHub.started == ["bob"] and "bob" not in FakeHub.running
    assert not (out / "ada").exists()


def test_a_collected_notebook_is_never_overwritten(hub, tmp_path, capsys):
    out = tmp_path / "submissions"
    assert course(["collect", "--hub", hub, str(out)]) == 0
    assert course(["collect", "--hub", hub, str(out)]) == 0  # nothing changed: nothing to do
    assert "unchanged" in capsys.readouterr().out
    ex = "mha-course/exercises/01_attention_from_scratch.ipynb"
    FakeHub.homes["ada"][ex] = ("late work\n", "2026-03-09T10:00:00Z")
    assert course(["collect", "--hub", hub, str(out)]) == 1
    assert "were not overwritten" in capsys.readouterr().err
    assert (out / "ada/01_attention_from_scratch.ipynb").read_text() == NOTEBOOK


def test_a_token_without_the_scopes_or_an_unknown_student_is_a_clear_error(hub, tmp_path, monkeypatch, capsys):
    assert course(["collect", "--hub", hub, "--student", "zoe", str(tmp_path / "s")]) == 1
    assert "the hub has no user zoe" in capsys.readouterr().err
    monkeypatch.setenv("MHA_COLLECT_TOKEN", "wrong")
    assert course(["collect", "--hub", hub, str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "answered 403" in err and "list:users, read:servers, servers, access:servers" in err
    monkeypatch.delenv("MHA_COLLECT_TOKEN")
    assert course(["collect", "--hub", hub, str(tmp_path / "s")]) == 1
    assert "set MHA_COLLECT_TOKEN" in capsys.readouterr().err
    assert not Path(tmp_path / "s").exists()


def test_an_unreachable_hub_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MHA_COLLECT_TOKEN", TOKEN)
    assert course(["collect", "--hub", "http://127.0.0.1:9", str(tmp_path / "s")]) == 1
    assert "cannot reach the hub at http://127.0.0.1:9" in capsys.readouterr().err


def test_a_hostile_server_writes_nothing_outside_its_students_folder(hub, tmp_path, capsys, monkeypatch):
    ex = "mha-course/exercises"
    escape = "01/../../../escaped/x.pth"
    FakeHub.homes = {
        "mallory": {
            f"{ex}/01_ok.ipynb": (NOTEBOOK, "2026-03-01T10:00:00Z"),
            f"{ex}/{escape}": ("import os; os.system('echo pwned')\n", "2026-03-01T10:00:00Z"),
            f"{ex}/01_A.ipynb": (NOTEBOOK, "2026-03-01T10:00:00Z"),
            f"{ex}/01_a.ipynb": (NOTEBOOK.replace("[]", "[ ]", 1), "2026-03-01T10:00:00Z"),
            f"{ex}/01_big.ipynb": (NOTEBOOK + " " * (2 << 20), "2026-03-01T10:00:00Z"),
        },
        "../trudy": {f"{ex}/01_x.ipynb": (NOTEBOOK, "2026-03-01T10:00:00Z")},
        "Zed": {f"{ex}/01_x.ipynb": (NOTEBOOK, "2026-03-01T10:00:00Z")},
        "zed": {f"{ex}/01_x.ipynb": (NOTEBOOK, "2026-03-01T10:00:00Z")},
    }
    # names only a hostile server lists: a way out, a lone surrogate, a control character, the same name twice
    FakeHub.listed = {"mallory": [escape, "../01_up.ipynb", "01_caf\udcff.ipynb", "01_bell\x07.ipynb", "01_ok.ipynb"]}
    FakeHub.running = set(FakeHub.homes)
    monkeypatch.setattr(collect, "MAX_FILE", 1 << 20, raising=False)
    top = tmp_path / "instructor"
    out = top / "submissions"
    assert course(["collect", "--hub", hub, str(out)]) == 1
    said = capsys.readouterr()
    written = sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file())
    assert written[0] == "submissions/Zed/01_x.ipynb" and written[2:] == ["submissions/mallory/01_ok.ipynb"]
    assert written[1] in ("submissions/mallory/01_A.ipynb", "submissions/mallory/01_a.ipynb"), written
    assert not (tmp_path / "escaped").exists() and not (top / "escaped").exists()
    assert "name(s) refused" in said.err and "\x07" not in said.out and "\udcff" not in said.out
    for words in ("would leave its folder", "not valid text", "control character", "ignores letter case"):
        assert words in said.out, words
    assert "larger than 1 MB" in said.out


def test_names_a_student_chooses_become_paths_only_when_they_stay_in_their_folder():
    for name in ("01_ok.ipynb", "Zoë Ångström", "ada"):
        assert collect.name_problem(name) == "", name
    for name in ("..", "a/b", "a\\b", ".hidden", "x\udcff", "bell\x07", "e\u202eflipped", "x" * 300, "", None):
        assert collect.name_problem(name) != "", name


class HtmlPage(BaseHTTPRequestHandler):
    """A web server that is not the hub's API: a login page, or a proxy's error page, whatever is asked."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b"<!DOCTYPE html><html><body>Sign in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("answer", ["html", "not a list of users"])
def test_a_hub_that_answers_something_else_than_its_json_is_named(answer, tmp_path, monkeypatch, capsys):
    if answer == "html":
        handler = HtmlPage
    else:

        class handler(FakeHub):  # noqa: N801 - a hub whose API answers JSON of another shape
            def _handle(self, method):
                return self._send(200, {"error": "maintenance"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MHA_COLLECT_TOKEN", TOKEN)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert course(["collect", "--hub", url, str(tmp_path / "s")]) == 1
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    expected = "expected the hub's JSON" if answer == "html" else "expected a list of users"
    assert expected in err and "Traceback" not in err, err
    if answer == "html":
        assert "<!DOCTYPE html>" in err
    assert not list((tmp_path / "s").rglob("*.ipynb"))
