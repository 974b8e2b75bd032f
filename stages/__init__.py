"""The command layer: one module per DVC stage, the `multvae` app that gathers them (cli.py), and
tools/ for commands outside the pipeline. Commands import the library (multvae), never the reverse,
and import it inside the command function, so `multvae --help` and the data stages load no torch."""
