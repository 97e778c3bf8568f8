"""Collect the students' exercise notebooks from a running JupyterHub, into the folder the grader reads.

    MHA_COLLECT_TOKEN=... python -m mha.course collect --hub https://hub.example.edu submissions

Through the hub's REST API, with a token whose role has the scopes list:users, read:servers, servers and
access:servers (the instructor guide's hub settings define it): every user's `FOLDER/exercises/NN_*.ipynb` (the
folder the course's link cloned the course into) is copied, byte for byte, to `submissions/<user>/NN_*.ipynb`, its
modification time set to when the student last saved it. A user whose server is stopped (the idle culler stops
them) is skipped, or with `start=True` started, collected and stopped again. Users without the course folder are
reported and skipped. A file already collected is never overwritten: an identical one is left as it is, a different
one is reported (collect into a new folder to compare).
"""

import base64
import datetime
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .release import FOLDER

SCOPES = "list:users, read:servers, servers, access:servers"


class HubError(RuntimeError):
    """The hub refused or could not be reached; the message says what to fix.

    Args:
        message: what went wrong and what to do.
        status: the HTTP status the hub answered (default None: no answer).
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Collected:
    """One notebook (or one user's reason for having none): what happened to it."""

    student: str
    notebook: str  # file name, or "" for a note about the user
    status: str  # "collected", "unchanged", "kept" (a different file was already there), "skipped"
    saved: str  # when the student last saved it (ISO 8601), or the reason for a skip


class Hub:
    """A JupyterHub's REST API and its users' servers, seen with one API token.

    Args:
        url: the hub's public address, e.g. "https://hub.example.edu" (its base URL, without "/hub").
        token: an API token; see SCOPES for what its role needs.
        timeout: seconds allowed per request (default 30).
    """

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        if not token:
            raise HubError("no API token: set MHA_COLLECT_TOKEN to the token of the hub's collection service")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def request(self, method: str, path: str, accept: str | None = None) -> tuple[int, bytes]:
        """(status, body) of `method` on `path` (which starts with "/"); HubError for anything but 2xx."""
        headers = {"Authorization": f"token {self.token}"}
        if accept:
            headers["Accept"] = accept
        request = urllib.request.Request(self.url + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")[:300]
            if error.code in (401, 403):
                raise HubError(
                    f"{method} {path}: the hub answered {error.code}; the token must belong to a service or user whose "
                    f"role has the scopes {SCOPES} ({body})",
                    error.code,
                ) from None
            raise HubError(f"{method} {path}: the hub answered {error.code} ({body})", error.code) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise HubError(f"cannot reach the hub at {self.url}: {reason}") from None

    def api(self, method: str, path: str):
        status, body = self.request(method, "/hub/api" + path, accept="application/jupyterhub-pagination+json")
        return json.loads(body) if body else None

    def users(self) -> list[dict]:
        """Every user, with their servers (page by page)."""
        users, offset = [], 0
        while True:
            page = self.api("GET", f"/users?offset={offset}&limit=200")
            items = page["items"] if isinstance(page, dict) else page
            users.extend(items)
            following = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not following:
                return users
            offset = following["offset"]

    def user(self, name: str) -> dict:
        return self.api("GET", f"/users/{urllib.parse.quote(name)}")

    def start(self, name: str, wait: float = 120.0) -> dict:
        """Start `name`'s server and wait until it answers; their user model."""
        self.api("POST", f"/users/{urllib.parse.quote(name)}/server")
        deadline = time.monotonic() + wait
        while True:
            model = self.user(name)
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return model
            if time.monotonic() > deadline:
                raise HubError(f"{name}'s server did not start within {wait:g} s")
            time.sleep(1.0)

    def stop(self, name: str) -> None:
        self.api("DELETE", f"/users/{urllib.parse.quote(name)}/server")

    def contents(self, server_url: str, path: str, listing: bool = False):
        """A Jupyter server's contents API: a folder's entries, or a file's text (None if the path does not exist)."""
        query = "content=1" if listing else "content=1&type=file&format=text"
        try:
            _, body = self.request("GET", f"{server_url.rstrip('/')}/api/contents/{urllib.parse.quote(path)}?{query}")
        except HubError as error:
            if error.status == 404:
                return None
            raise
        return json.loads(body)


def _saved_at(model: dict) -> float:
    stamp = model["last_modified"].replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


def _write(target: Path, data: bytes, saved: float) -> str:
    if target.exists():
        return "unchanged" if target.read_bytes() == data else "kept"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(data)
    os.utime(tmp, (saved, saved))
    os.replace(tmp, target)
    return "collected"


def collect_user(
    hub: Hub, model: dict, out: Path, folder: str = FOLDER, start: bool = False, lessons: list[str] | None = None
) -> list[Collected]:
    """Copy one user's exercise notebooks (of `lessons`, default all) into out/<user>/; what happened to each."""
    name = model["name"]
    server = model.get("servers", {}).get("")
    started = False
    if not (server and server.get("ready")):
        if not start:
            return [Collected(name, "", "skipped", "server not running (use --start to start it for collection)")]
        model, started = hub.start(name), True
        server = model["servers"][""]
    try:
        listing = hub.contents(server["url"], f"{folder}/exercises", listing=True)
        if listing is None:
            return [Collected(name, "", "skipped", f"no {folder}/exercises/ in their home (never clicked the link?)")]
        rows = []
        names = sorted(
            entry["name"]
            for entry in listing["content"]
            if entry["type"] == "notebook"
            and entry["name"][:2].isdigit()
            and ".fresh." not in entry["name"]
            and (lessons is None or entry["name"][:2] in lessons)
        )
        for notebook in names:
            file = hub.contents(server["url"], f"{folder}/exercises/{notebook}")
            if file is None:  # deleted between the listing and now
                continue
            text = file["content"]
            data = base64.b64decode(text) if file.get("format") == "base64" else text.encode()
            status = _write(out / name / notebook, data, _saved_at(file))
            rows.append(Collected(name, notebook, status, file["last_modified"]))
        return rows or [Collected(name, "", "skipped", f"no exercise notebooks in {folder}/exercises/")]
    finally:
        if started:
            hub.stop(name)


def collect(
    hub: Hub,
    out: Path,
    folder: str = FOLDER,
    start: bool = False,
    students: list[str] | None = None,
    lessons: list[str] | None = None,
) -> list[Collected]:
    """Collect every user's (or only `students`') exercise notebooks into out/<user>/.

    Args:
        hub: the hub, with a token of the collection role.
        out: the submissions folder; one sub-folder per student is created in it.
        folder: where the course is in each home (the link's targetpath; default "mha-course").
        start: start the servers that are stopped, collect, and stop them again (default False: skip them).
        students: only these users (default None: everyone).
        lessons: only these lessons' notebooks, e.g. ["01"] (default None: every exercise notebook).
    """
    users = hub.users()
    if students is not None:
        known = {u["name"] for u in users}
        unknown = sorted(set(students) - known)
        if unknown:
            raise HubError(f"the hub has no user {', '.join(unknown)} (it has {len(known)} users)")
        users = [u for u in users if u["name"] in set(students)]
    rows = []
    for model in sorted(users, key=lambda u: u["name"]):
        if model.get("kind", "user") != "user":
            continue
        rows.extend(collect_user(hub, model, Path(out), folder, start, lessons))
    return rows
