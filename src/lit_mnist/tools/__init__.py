"""Around finished runs: read them back, plot, diagnose, export, compare and tabulate them.
Nothing here runs inside training."""
