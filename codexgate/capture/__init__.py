"""Reading usage out of relayed traffic: headers, identities, bodies, streams, observers."""
