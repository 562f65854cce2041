"""What ``oml.ds.save`` refuses before any object is pickled, as OML4Py does: one check
for the two ``oml`` modules, the client's (``epe.client``) and the one functions import
in a worker (``runner/worker/userlib/oml``)."""

from __future__ import annotations


def check_save(objs: object, overwrite: bool, append: bool) -> None:
    if not isinstance(objs, dict) or not objs:
        raise TypeError("objs must be a non-empty dict of name -> object")
    if overwrite and append:
        raise ValueError("overwrite and append cannot both be True")
