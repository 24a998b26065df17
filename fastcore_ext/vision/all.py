"""fastai v2's spelling of the star import: ``from fastcore_ext.vision.all import *`` gives the
same names as ``from fastcore_ext.vision import *`` (fastai 2's ``fastai.vision.all``), so
code written for fastai v2 runs with its import line changed only in the package name."""

from fastcore_ext.vision import *  # noqa: F403
from fastcore_ext.vision import __all__  # noqa: F401  (the same public names)
