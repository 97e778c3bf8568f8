# The course's kernel settings. `make setup` installs this file into the virtual environment (.venv/etc/ipython/,
# where IPython looks), so every kernel started from .venv reads it: in JupyterLab, in `jupyter nbconvert --execute`.
import logging

c = get_config()  # noqa: F821 (provided by Jupyter when it reads this file)


class _NoTransportWarning(logging.Filter):
    """Drop ipykernel's warning "Kernel is running over TCP without encryption", printed at every kernel start.

    The course's kernels listen on the loopback interface only, and every message they accept must carry the HMAC
    signature whose key is in the connection file, readable by the learner alone. The warning is about eavesdropping
    on that local traffic; on a learner's laptop or a hub server it only hides the messages that matter.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "running over TCP without encryption" not in record.getMessage()


logging.getLogger("IPKernelApp").addFilter(_NoTransportWarning())
