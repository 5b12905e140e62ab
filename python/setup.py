"""Only marks the wheel as platform-specific: `make python` puts libcbamrun.so (a native
library) into the package, so the wheel must not be tagged pure-Python. Metadata is in pyproject.toml."""
from setuptools import setup
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(distclass=BinaryDistribution)
