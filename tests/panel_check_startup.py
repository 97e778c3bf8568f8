"""Run by each kernel of the notebook run (PYTHONSTARTUP, set by tests/panel_check_plugin.py): every figure checks its
panels as it is rendered, inline or by savefig, and a figure with an empty panel raises and is logged."""


def _install() -> None:
    import json
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from panel_check import EmptyPanel, check_figure
    finally:
        sys.path.pop(0)
    from matplotlib.backend_bases import FigureCanvasBase

    render = FigureCanvasBase.print_figure

    def print_figure_checked(self, *args, **kwargs):
        try:
            check_figure(self.figure)
        except EmptyPanel as problem:
            log = os.environ.get("MHA_EMPTY_PANELS_LOG")
            if log:
                with open(log, "a") as f:
                    f.write(json.dumps({"message": str(problem)}) + "\n")
            raise
        return render(self, *args, **kwargs)

    FigureCanvasBase.print_figure = print_figure_checked


_install()
del _install
