"""The license, which pyproject.toml cannot give to every setuptools that builds this package.

Everything else is in pyproject.toml. setuptools 77 and later take the SPDX expression
and license files of PEP 639; Python 3.8 has no such setuptools, and the one it has (75.3)
refuses both keys in pyproject.toml, so they are set here, in the form each one reads.
"""

import setuptools
from setuptools import setup

if int(setuptools.__version__.split(".")[0]) >= 77:
    setup(license_expression="Unlicense", license_files=["UNLICENSE"])
else:
    setup(license="Unlicense", license_files=["UNLICENSE"])
