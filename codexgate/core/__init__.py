"""Pure rules and data: models, windows, text, forecast maths. No aiohttp, no SQL, no I/O."""
