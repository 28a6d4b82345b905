"""The SQLite backend: connection, PRAGMAs, migrations and every SQL statement."""
