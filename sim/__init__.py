"""A worker's day played against a running server through the public API only, with cheaters
planted among honest workers, to see the checks tell them apart (``python -m sim``)."""
