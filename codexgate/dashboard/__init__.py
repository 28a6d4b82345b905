"""The HTML edge: page handlers, rendering, view models, SVG charts, strings."""
