"""The packages, found as setuptools finds them, and the pages' resources: templates/ and static/
stay at the repository's top level (the project's layout) and ship as the web package's
resources, app.web.templates and app.web.static (pyproject.toml's package-data), read through
importlib.resources (app/web/main.py `resource_dir`), so that an installed package serves its
pages from any working directory. Everything else is in pyproject.toml.

A folder that is absent is left out (the Docker image's dependency layer builds from
pyproject.toml and an empty app/)."""

from pathlib import Path

from setuptools import find_packages, setup

RESOURCES = {"app.web.templates": "templates", "app.web.static": "static"}
present = {name: folder for name, folder in RESOURCES.items() if Path(folder).is_dir()}

setup(packages=find_packages(include=["app", "app.*", "training", "training.*"]) + list(present),
      package_dir=present)
