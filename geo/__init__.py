"""Pure geography: distances, opening hours, travel-time models and route suggestion.

Nothing in this package imports a web framework, a database driver or an object store.
"""
