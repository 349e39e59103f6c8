"""The HTTP edge: middleware, dependencies, limits, problems, health, serving."""
