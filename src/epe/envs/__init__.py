"""Named environments (docs/environments.md): folders under ``<data_dir>/envs``, built by pip.

``registry`` knows where they live, what they are and who may delete them; ``build``
makes one. The server and ``epe env`` share both; the server's pools of workers per
environment are ``epe.runner.environments``.
"""

from epe.envs.build import Base, RunAs, Spec, build, check_spec
from epe.envs.registry import (
    Environment,
    describe,
    envs_root,
    listing,
    prepare_root,
    read,
    remove,
    sweep,
)

__all__ = ["Base", "Environment", "RunAs", "Spec", "build", "check_spec", "describe", "envs_root",
           "listing", "prepare_root", "read", "remove", "sweep"]
