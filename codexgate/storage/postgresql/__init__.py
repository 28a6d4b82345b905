"""The PostgreSQL backend: an asyncpg pool, one writer at a time across instances."""
