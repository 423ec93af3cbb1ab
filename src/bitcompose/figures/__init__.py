"""Figures with Pillow (sample grids) and matplotlib (plots with axes, labels and legends)."""
