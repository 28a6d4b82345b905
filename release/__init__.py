"""Release tooling: `python -m release.dist` builds the artifacts of `make dist`."""
