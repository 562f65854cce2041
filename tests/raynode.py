"""A second Ray node joining the tests' cluster (tests/raycluster.py): what ``ray start
--address`` does, without the rewriting of ``127.0.0.1`` that keeps it off loopback.

Run as ``python tests/raynode.py '<json of Ray's node parameters>'``; it starts the
node's processes (they outlive it, as after ``ray start``) and exits.

Ray binds its servers to loopback only when the node's IP address is ``127.0.0.1``.
``ray start`` replaces a ``127.0.0.1`` given as ``--node-ip-address`` or in ``--address``
by the machine's outward address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, and with
that variable it refuses to add a node to a cluster. So this node is made the way Ray's
own multi-node test cluster (``ray.cluster_utils.Cluster``) makes its nodes: a
``Node`` built from the parameters as given.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    params = RayParams(**json.loads(sys.argv[1]))
    Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)


if __name__ == "__main__":
    main()
