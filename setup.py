"""Build of record. Metadata lives in pyproject.toml; the native extension (csrc/) plugs in here."""
from setuptools import setup

setup()
