"""ngspice as a child process: one batch run (run.py), a long-lived session (session.py), and the
reader of the binary raw files both write (rawfile.py). Nothing here knows about circuits or
problems: spu/backends/ngspice.py turns a built circuit into these calls."""
