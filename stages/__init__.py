"""One module per DVC stage: each is a thin Typer command that reads params, calls multvae, writes."""
