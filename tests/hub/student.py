"""A student's browser, reduced to the requests it makes: log in, follow the course's link, run cells, save.

Cookies, redirects, the login form's XSRF field, the hub's spawn-pending page, nbgitpuller's page (whose script
streams the pull, then sends the browser on) and JupyterLab's kernel websocket are done the way the pages' own
scripts do them, so a broken link or a missing kernel fails here as it would in front of a class.
"""

import asyncio
import html
import http.cookiejar
import json
import re
import time
import urllib.parse
import urllib.request
import uuid

import nbformat
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


class Student:
    """One browser session on the hub.

    Args:
        hub: the hub's address, e.g. "http://127.0.0.1:8000".
        name: the user name to log in with.
        password: the password the hub's authenticator accepts.
    """

    def __init__(self, hub: str, name: str, password: str):
        self.hub, self.name, self.password = hub.rstrip("/"), name, password
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.prefix = f"/user/{name}/"

    # -- plain HTTP --------------------------------------------------------------------------------------------
    def _cookie(self, name: str, path: str | None = None) -> str | None:
        for cookie in self.jar:
            if cookie.name == name and (path is None or cookie.path == path):
                return cookie.value
        return None

    def open(self, url: str, data: bytes | None = None, method: str | None = None, headers: dict | None = None):
        """(final URL, status, body text) after redirects."""
        url = url if url.startswith("http") else self.hub + url
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(request, timeout=120) as response:
                return response.geturl(), response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.geturl(), error.code, error.read().decode(errors="replace")

    def api(self, method: str, path: str, body=None):
        """The single-user server's REST API, authenticated by the session's cookie (and its XSRF token)."""
        xsrf = self._cookie("_xsrf", self.prefix) or self._cookie("_xsrf") or ""
        headers = {"X-XSRFToken": xsrf, "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        _, status, text = self.open(f"{self.prefix}api/{path}", data=data, method=method, headers=headers)
        if status >= 300:
            raise AssertionError(f"{self.name}: {method} api/{path} answered {status}: {text[:300]}")
        return json.loads(text) if text else None

    # -- the link ----------------------------------------------------------------------------------------------
    def follow_link(self, link: str, timeout: float = 180.0) -> str:
        """Click the course's link: log in if asked, wait for the server, let nbgitpuller pull; the URL opened."""
        url, status, page = self.open(link)
        if "/hub/login" in urllib.parse.urlsplit(url).path:
            url, status, page = self._log_in(url, page)
        if status == 424:  # "server not running": with implicit spawns, the page's script goes to its spawn URL
            spawn = re.search(r'var spawn_url = "([^"]*)"', page)
            assert spawn, f"{self.name}: the hub shows 'server not running' and waits for a click on Launch server"
            url, status, page = self.open(urllib.parse.urljoin(url, html.unescape(spawn.group(1))))
        deadline = time.monotonic() + timeout
        while "/hub/spawn-pending/" in url or "/hub/spawn/" in url:  # the page polls, then goes on to `next`
            assert time.monotonic() < deadline, f"{self.name}'s server did not start in {timeout:g} s"
            time.sleep(1.0)
            target = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("next", [link])[0]
            url, status, page = self.open(target)
        assert status == 200 and "/git-pull" in url, f"{self.name}: the link ended at {url} ({status}): {page[:300]}"
        return self._pull(page)

    def _log_in(self, url: str, page: str):
        xsrf = re.search(r'name="_xsrf"\s+value="([^"]*)"', page)
        form = {"username": self.name, "password": self.password}
        if xsrf:
            form["_xsrf"] = html.unescape(xsrf.group(1))
        action = re.search(r'<form[^>]*action="([^"]*)"', page)
        target = html.unescape(action.group(1)) if action else url
        target = urllib.parse.urljoin(url, target)
        return self.open(target, data=urllib.parse.urlencode(form).encode(), method="POST")

    def _pull(self, page: str) -> str:
        """What nbgitpuller's page script does: stream the pull's progress, then open the redirect URL."""
        data = {key: urllib.parse.unquote(value) for key, value in re.findall(r'data-([a-z-]+)="([^"]*)"', page)}
        params = {"_xsrf": data["xsrf"], "repo": data["repo"], "targetpath": data["targetpath"]}
        for optional in ("depth", "branch", "backup"):
            if optional in data:
                params[optional] = data[optional]
        url = data["base-url"] + "git-pull/api?" + urllib.parse.urlencode(params)
        _, status, stream = self.open(url)
        events = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: ")]
        phases = [e.get("phase") for e in events]
        assert status == 200 and "finished" in phases, f"{self.name}: the pull did not finish: {events[-3:]}"
        self.pull_log = "".join(e.get("output", "") for e in events)
        target = data["base-url"] + data["path"]
        opened, status, _ = self.open(target)
        assert status == 200, f"{self.name}: {target} answered {status}"
        return target

    def notebook_of(self, lab_url: str) -> str:
        """The file a JupyterLab URL opens (`.../lab/tree/PATH?autodecode`), checked to exist as a notebook."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(lab_url).path).split("/lab/tree/", 1)[1]
        model = self.api("GET", f"contents/{urllib.parse.quote(path)}?content=0")
        assert model["type"] == "notebook", f"{path} is a {model['type']}"
        return path

    # -- notebooks ---------------------------------------------------------------------------------------------
    def read(self, path: str):
        return nbformat.from_dict(self.api("GET", f"contents/{urllib.parse.quote(path)}?content=1")["content"])

    def save(self, path: str, nb) -> None:
        self.api("PUT", f"contents/{urllib.parse.quote(path)}", {"type": "notebook", "format": "json", "content": nb})

    def start_kernel(self, path: str) -> str:
        """Open `path` with the kernel its metadata names, as JupyterLab does; the kernel's id."""
        kernel = self.read(path).metadata["kernelspec"]["name"]
        session = self.api(
            "POST",
            "sessions",
            {"path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook", "kernel": {"name": kernel}},
        )
        assert session["kernel"]["name"] == kernel
        return session["kernel"]["id"]

    def run_all(self, path: str, kernel_id: str, nb, timeout: float = 300.0) -> tuple[int, dict | None]:
        """Run the cells in order, stopping at the first error, as Run All does; (cells run, the error or None).

        The outputs go into `nb`'s cells, as JupyterLab shows them before saving.
        """
        return asyncio.run(self._run_all(kernel_id, nb, timeout))

    async def _run_all(self, kernel_id: str, nb, timeout: float):
        host = urllib.parse.urlsplit(self.hub)
        ws_url = f"ws://{host.netloc}{self.prefix}api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        socket = await websocket_connect(HTTPRequest(ws_url, headers={"Cookie": cookies}, connect_timeout=60))
        deadline = time.monotonic() + timeout
        ran, error = 0, None
        try:
            for cell in nb.cells:
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                cell.outputs, msg_id = [], uuid.uuid4().hex
                header = {
                    "msg_id": msg_id,
                    "username": self.name,
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                }
                content = {"code": cell.source, "silent": False, "store_history": True, "stop_on_error": True}
                await socket.write_message(
                    json.dumps(
                        {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
                    )
                )
                idle = replied = False
                while not (idle and replied):
                    left = deadline - time.monotonic()
                    assert left > 0, f"{self.name}: Run All did not finish in {timeout:g} s"
                    raw = await asyncio.wait_for(socket.read_message(), left)
                    assert raw is not None, f"{self.name}: the kernel's websocket closed"
                    if isinstance(raw, bytes):  # a message with binary buffers: widget state, not an output
                        continue
                    msg = json.loads(raw)
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind = msg["header"]["msg_type"]
                    if kind == "status" and msg["content"]["execution_state"] == "idle":
                        idle = True
                    elif kind == "execute_reply":
                        replied = True
                        cell.execution_count = msg["content"].get("execution_count")
                        if msg["content"]["status"] == "error":
                            error = msg["content"]
                    elif kind in ("stream", "display_data", "execute_result", "error"):
                        cell.outputs.append(nbformat.v4.output_from_msg(msg))
                ran += 1
                if error:
                    break
        finally:
            socket.close()
        return ran, error
