"""The JSON edge: REST resources, the compat routes, errors, the OpenAPI document, health."""
