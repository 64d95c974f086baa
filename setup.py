"""Thin shim for tools and habits that expect a setup.py; the metadata lives in pyproject.toml."""

from setuptools import setup

setup()
