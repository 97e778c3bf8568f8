"""Collect the students' exercise notebooks from a running JupyterHub, into the folder the grader reads.

    MHA_COLLECT_TOKEN=... python -m mha.course collect --hub https://hub.example.edu submissions

Through the hub's REST API, with a token whose role has the scopes list:users, read:servers, servers and
access:servers (the instructor guide's hub settings define it): every user's `FOLDER/exercises/NN_*.ipynb` (the
folder the course's link cloned the course into) is copied, byte for byte, to `submissions/<user>/NN_*.ipynb`, its
modification time set to when the student last saved it. A user whose server is stopped (the idle culler stops
them) is skipped, or with `start=True` started, collected and stopped again. Users without the course folder are
reported and skipped. A file already collected is never overwritten: an identical one is left as it is, a different
one is reported (collect into a new folder to compare).

Names come from the students' servers, which students control: a user or notebook name that would leave its folder
(`01/../../x.pth`), is not valid text, holds a control character, or collides with another on a file system that
ignores letter case or Unicode forms is refused, and said so; nothing is written outside `submissions/<user>/`, and
no download larger than a notebook the grader would read is kept in memory.
"""

import base64
import binascii
import datetime
import json
import os
import re
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .release import FOLDER
from .report import safe

SCOPES = "list:users, read:servers, servers, access:servers"
NOTEBOOK = re.compile(r"^[0-9]{2}_[^/\\\x00]*\.ipynb$")
MAX_FILE = 48 << 20  # bytes of one answer of the contents API: a 16 MB notebook, base64-encoded, with room
MAX_LISTING = 8 << 20  # bytes of a folder's listing, or of the hub's answers


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
    status: str  # "collected", "unchanged", "kept" (a different file was already there), "skipped", "refused"
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

    def request(self, method: str, path: str, accept: str | None = None, limit: int = MAX_LISTING) -> tuple[int, bytes]:
        """(status, body) of `method` on `path` (which starts with "/"); HubError for anything but 2xx, or for an
        answer longer than `limit` bytes (never read whole into memory)."""
        headers = {"Authorization": f"token {self.token}"}
        if accept:
            headers["Accept"] = accept
        request = urllib.request.Request(self.url + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(limit + 1)
                if len(body) > limit:
                    raise HubError(f"{method} {path}: the answer is larger than {limit >> 20} MB: not read")
                return response.status, body
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
        if not body:
            return None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # a login page, a proxy's error page: HTML where JSON was expected
            start = safe(body[:60].decode("utf-8", errors="replace").strip())
            raise HubError(
                f"{method} /hub/api{path}: expected the hub's JSON, got something else (it begins {start!r}); is "
                f"{self.url} the hub's address (its base URL, without /hub)?"
            ) from None

    def users(self) -> list[dict]:
        """Every user, with their servers (page by page)."""
        users, offset = [], 0
        while True:
            page = self.api("GET", f"/users?offset={offset}&limit=200")
            items = page.get("items") if isinstance(page, dict) else page
            if not isinstance(items, list) or not all(
                isinstance(u, dict) and isinstance(u.get("name"), str) for u in items
            ):
                raise HubError(
                    f"GET /hub/api/users: expected a list of users, each with a name, got {safe(str(page)[:80])!r}"
                )
            users.extend(items)
            pagination = page.get("_pagination") if isinstance(page, dict) else None
            following = pagination.get("next") if isinstance(pagination, dict) else None
            if not following:
                return users
            if not isinstance(following, dict) or not isinstance(following.get("offset"), int):
                raise HubError(f"GET /hub/api/users: the next page's offset is missing ({safe(str(following)[:80])!r})")
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
        url = f"{server_url.rstrip('/')}/api/contents/{urllib.parse.quote(path)}?{query}"
        try:
            _, body = self.request("GET", url, limit=MAX_LISTING if listing else MAX_FILE)
        except HubError as error:
            if error.status == 404:
                return None
            raise
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise HubError(f"GET {path}: the server's answer is not JSON") from None


def _saved_at(model: dict) -> float:
    try:
        stamp = str(model["last_modified"]).replace("Z", "+00:00")
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except (KeyError, ValueError, TypeError, OverflowError):
        return time.time()


def name_problem(name, kind: str = "name") -> str:
    """Why a student-chosen name cannot become a file or folder name here ("" if it can)."""
    if not isinstance(name, str) or not name:
        return f"the {kind} is not text"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return f"the {kind} is not valid text (UTF-8)"
    if safe(name) != name:
        return f"the {kind} holds a control character"
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        return f"the {kind} would leave its folder, or hide in it"
    if len(encoded) > 255:
        return f"the {kind} is longer than a file name may be"
    return ""


def _key(name: str) -> str:
    """What a file system that ignores letter case or Unicode forms (macOS, Windows) sees of a name."""
    return unicodedata.normalize("NFC", name).casefold()


def _inside(out: Path, name: str) -> Path | None:
    """out/name, if it is a folder of its own (not a link) inside `out`; None if it is not."""
    folder = out / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        return None
    if folder.resolve().parent != out.resolve():
        return None
    return folder


def _write(target: Path, data: bytes, saved: float) -> str:
    """Write a collected notebook, never replacing any file: "collected", "unchanged", "kept" or "refused".

    Not `mha._provenance.writable`, and stricter than it: `writable` may replace a file of ours (a results file
    whose provenance names its command), while a notebook already in out/<user>/ is never replaced, even one that
    collect wrote (it may have been graded, or edited by the instructor); an identical one is left as it is, a
    different one is kept and reported. The folder `out` itself goes through the same rule as every command's
    (`writable_folder`, checked by the command before any request).
    """
    if target.is_symlink():
        return "refused"
    if target.exists():
        return "unchanged" if target.read_bytes() == data else "kept"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.utime(tmp, (saved, saved))
    os.replace(tmp, target)
    return "collected"


def collect_user(
    hub: Hub, model: dict, out: Path, folder: str = FOLDER, start: bool = False, lessons: list[str] | None = None
) -> list[Collected]:
    """Copy one user's exercise notebooks (of `lessons`, default all) into out/<user>/; what happened to each."""
    name = model["name"]
    problem = name_problem(name, "user name")
    mine = None if problem else _inside(out, name)
    if problem or mine is None:
        return [Collected(safe(name), "", "refused", problem or f"{safe(name)} in {out} is not a folder of its own")]
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
        entries = listing.get("content") if isinstance(listing, dict) else None
        rows, wanted, seen = [], [], {}
        for entry in entries if isinstance(entries, list) else []:
            notebook = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(notebook, str) or entry.get("type") != "notebook" or ".fresh." in notebook:
                continue
            if not notebook[:2].isdigit() or (lessons is not None and notebook[:2] not in lessons):
                continue
            problem = name_problem(notebook, "notebook's name") or (
                "" if NOTEBOOK.match(notebook) else "the notebook's name is not NN_name.ipynb"
            )
            if problem:
                rows.append(Collected(name, safe(notebook), "refused", problem))
                continue
            wanted.append(notebook)
        existing = {_key(p.name): p.name for p in mine.iterdir()} if mine.is_dir() else {}
        for notebook in sorted(wanted):
            other = seen.get(_key(notebook)) or existing.get(_key(notebook))
            if other is not None and other != notebook:
                why = f"its name and {safe(other)}'s are one on a file system that ignores letter case: not collected"
                rows.append(Collected(name, notebook, "refused", why))
                continue
            if notebook in seen.values():
                continue  # listed twice
            seen[_key(notebook)] = notebook
            rows.append(_fetch(hub, server, folder, name, notebook, mine))
        return rows or [Collected(name, "", "skipped", f"no exercise notebooks in {folder}/exercises/")]
    finally:
        if started:
            hub.stop(name)


def _fetch(hub: Hub, server: dict, folder: str, name: str, notebook: str, mine: Path) -> Collected:
    try:
        file = hub.contents(server["url"], f"{folder}/exercises/{notebook}")
    except HubError as error:
        return Collected(name, notebook, "refused", safe(error))
    if file is None:  # deleted between the listing and now
        return Collected(name, notebook, "skipped", "deleted while it was being collected")
    text = file.get("content") if isinstance(file, dict) else None
    if not isinstance(text, str):
        return Collected(name, notebook, "refused", "the server sent no text for it")
    try:
        data = base64.b64decode(text, validate=True) if file.get("format") == "base64" else text.encode()
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return Collected(name, notebook, "refused", "the server sent text that cannot be decoded")
    target = mine / notebook
    if target.parent != mine:
        return Collected(name, notebook, "refused", "the notebook's name would leave its folder")
    status = _write(target, data, _saved_at(file))
    return Collected(name, notebook, status, safe(file.get("last_modified")))


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
    users = [u for u in hub.users() if isinstance(u, dict) and isinstance(u.get("name"), str)]
    if students is not None:
        known = {u["name"] for u in users}
        unknown = sorted(set(students) - known)
        if unknown:
            raise HubError(f"the hub has no user {safe(', '.join(unknown))} (it has {len(known)} users)")
        users = [u for u in users if u["name"] in set(students)]
    rows, seen = [], {}
    out = Path(out)
    if out.is_symlink():
        raise HubError(f"{out} is a link: collect into a folder of its own")
    for model in sorted(users, key=lambda u: u["name"].encode("utf-8", "surrogatepass")):
        if model.get("kind", "user") != "user":
            continue
        other = seen.setdefault(_key(model["name"]), model["name"])
        if other != model["name"]:
            why = f"this name and {safe(other)}'s are one on a file system that ignores letter case: not collected"
            rows.append(Collected(safe(model["name"]), "", "refused", why))
            continue
        try:
            rows.extend(collect_user(hub, model, out, folder, start, lessons))
        except HubError as error:  # one student's server that fails or misbehaves costs only that student
            rows.append(Collected(model["name"], "", "skipped", safe(error)))
    return rows
