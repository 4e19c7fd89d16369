"""The wheel carries the project's shipped files (prompt templates, data samples and taxonomies, every
stage's configs) inside the package, under tunelab/shipped/, laid out as in the checkout, so an installed
tunelab finds them as a checkout does (tunelab/paths.py). Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("prompts", "data", "configs", "generate/configs", "finetune/configs", "evaluate/configs")


class BuildWithShippedFiles(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "tunelab" / "shipped"
        shutil.rmtree(target, ignore_errors=True)  # a file deleted since an earlier build must not ship
        for folder in SHIPPED:
            for path in sorted((ROOT / folder).rglob("*")):
                # the data folder's own scripts (split_imdb.py, ...) are run from a checkout, not shipped
                if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".py", ".pyc"):
                    destination = target / path.relative_to(ROOT)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, destination)


setup(cmdclass={"build_py": BuildWithShippedFiles})
