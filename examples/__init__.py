"""Worked examples of cfbench extensions.

A regular package (not a namespace one) on purpose: avalanche-lib installs a top-level
``examples`` package into site-packages, which would otherwise shadow this folder.
"""
