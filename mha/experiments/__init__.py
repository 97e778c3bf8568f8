"""The course's experiments, each one a module with a command: `python -m mha.experiments NAME --help`.

A notebook runs an experiment by calling the module's functions; the command calls the same functions, prints the
same table and can write the runs as JSON. To add one, write a module with `add_arguments(parser)` and `main(args)`
and list it in `COMMANDS` of `mha.experiments.__main__`.
"""
