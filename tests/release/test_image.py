"""The container image: built from the repository's Containerfile by deploy/build-image.sh
with podman, from a Debian root filesystem mmdebstrap makes and the session's wheelhouse
(nothing pulled, no network in the build), then run with the data folder as a volume; the
README's smoke checks (tests/acceptance/test_smoke.py) pass against the container.

Run as podman runs on these machines (docs/deploy.md, The image): as root, ``runc``,
explicit ulimits, the host's network with the server on 127.0.0.1 (a bridge network would
have podman rewrite the host's firewall), and CAP_SYS_ADMIN and CAP_NET_ADMIN for the
workers' sandbox.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_smoke import check_new_install, check_walkthrough
from tests.release.conftest import Dist
from tests.release.history import REPO
from tests.release.history import project_version as version
from tests.serverproc import EpeServer

DEMO_PASSWORD = "demo-Secret1"
# podman's default ulimits are above what these hosts allow: explicit ones.
PODMAN_RUN = ["podman", "run", "--rm", "--runtime", "runc",
              "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
RUN = [*PODMAN_RUN, "--network", "host", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
       "--env", "EPE_HOST=127.0.0.1"]

pytestmark = [
    # Building the image takes minutes (a Debian base, then ~1 GB of wheels installed):
    # `make test` and `make test-image` run it, a bare `pytest` and `make test-fast` do not.
    pytest.mark.skipif(os.environ.get("EPE_TEST_IMAGE") != "1",
                       reason="the image's test runs with `make test` or `make test-image`"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the image is built and run by root's podman"),
]


@pytest.fixture(scope="module")
def image(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make podman` installs Debian's packages")
    context = tmp_path_factory.mktemp("image")
    shutil.copytree(dist.wheelhouse, context / "wheelhouse", copy_function=os.link)
    tag = f"localhost/epe:{version()}-test{os.getpid()}"
    built = subprocess.run([REPO / "deploy" / "build-image.sh", context, tag],
                           capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stdout[-5000:] + built.stderr[-5000:]
    yield tag
    subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, timeout=300)


def test_the_image_answers_its_version_in_a_login_shell_too(image: str) -> None:
    """KubeRay starts its nodes' commands through ``bash -l``, whose PATH /etc/profile sets."""
    done = subprocess.run([*PODMAN_RUN, "--network", "none", "--entrypoint", "bash", image,
                           "-lc", "epe --version"],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == f"epe, version {version()}", done.stdout + done.stderr


def test_the_image_serves_a_data_folder_volume(image: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    volume = ["--volume", f"{data}:{data}"]  # the same path inside: the tests name it once
    name = f"epe-test-{os.getpid()}"
    demo = subprocess.run([*RUN, *volume, "--env", f"EPE_DEMO_PASSWORD={DEMO_PASSWORD}",
                           image, "demo", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0 and "IRIS" in demo.stdout, demo.stdout + demo.stderr
    server = EpeServer(data, wrapper=(*RUN, "--name", name, *volume, image), epe=(),
                       cli=("podman", "exec", "--interactive", name, "epe"))
    try:
        server.start(timeout=180)
        with server.http() as c:
            assert c.get("/health").json()["tenantIsolation"] is True
        check_walkthrough(server)
        check_new_install(server, DEMO_PASSWORD)
        # podman run ends as the server did: by the SIGTERM it passed on (128 + 15).
        assert server.stop() in (0, 143), "".join(server.output)
        # What it kept is in the volume, on the host.
        assert (data / "metadata.sqlite").is_file()
    finally:
        server.stop()
        subprocess.run(["podman", "rm", "--force", "--ignore", name], capture_output=True,
                       timeout=120)
