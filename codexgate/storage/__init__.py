"""Where codexgate keeps its data: the storage interface and its backends."""
