"""What a segbench run runs: the suite file (`suite`) validated into cases, the `runner` that runs them, the files
they need (`artifacts`, `budgeted`), the PyTorch `baseline`, a model `served` through Triton, and the `soak` run."""
