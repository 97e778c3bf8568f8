# The course's Jupyter server settings. `make lab` installs this file into the virtual environment
# (.venv/etc/jupyter/), so every server started from .venv reads it.
import logging

c = get_config()  # noqa: F821 (provided by Jupyter when it reads this file)

# New notebooks (the Launcher's first entry, File > New > Notebook) use the course's kernel, which has `mha`.
c.MultiKernelManager.default_kernel_name = "mha-course"


class _NoPingTimeoutWarning(logging.Filter):
    """Drop tornado's warning that the websocket ping timeout exceeds the ping interval.

    The Jupyter server keeps its own websocket pings (every 30 s, closing a connection after 90 s without an answer)
    and hands the same numbers to tornado, which since version 6.5 refuses a timeout longer than the interval and
    says so once per server. Making the timeout equal to the interval would make the server's own check close live
    connections, so the warning, which changes nothing, is silenced here instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "websocket_ping_timeout" not in record.getMessage()


logging.getLogger("tornado.general").addFilter(_NoPingTimeoutWarning())
