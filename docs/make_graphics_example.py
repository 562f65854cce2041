"""Make ``docs/images/random-red-dots.png`` with a real call (docs/graphics.md).

Starts ``epe serve`` on a free port of 127.0.0.1 with a temporary data folder,
loads ``epe demo`` (user OMLUSER and Oracle's ``RandomRedDots`` script), runs

    POST /oml/api/py-scripts/v1/do-eval/RandomRedDots  {"graphicsFlag":true, "service":"LOW"}

as Oracle's documentation does, writes the first ``IMAGE`` to the PNG and prints
an excerpt of the response (images shortened) to stdout. The dots are random, so
every run draws a different picture.

Run: ``.venv/bin/python docs/make_graphics_example.py [--out PATH]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
EPE = [sys.executable, "-m", "epe"]
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
DO_EVAL = "/oml/api/py-scripts/v1/do-eval/RandomRedDots"
BODY = '{"graphicsFlag":true, "service":"LOW"}'  # Oracle's example, verbatim
PASSWORD = "demo-Secret1"
_READY = re.compile(r"epe serving on (http://\S+)")


def serve(data_dir: Path, env: dict[str, str], timeout: float = 120) -> tuple[Any, str]:
    """``epe serve`` on a free port; the process and its URL once it is ready."""
    proc = subprocess.Popen([*EPE, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if (m := _READY.search(line)) and not ready.is_set():
                found.append(m.group(1))
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout):
        proc.terminate()
        proc.wait()
        raise RuntimeError("epe serve did not start")
    return proc, found[0]


def excerpt(result: list[dict[str, Any]]) -> str:
    """The response with each IMAGE cut to its first and last characters, as Oracle shows it."""
    short = [{**e, "IMAGE": f"{e['IMAGE'][:16]}...{e['IMAGE'][-16:]}"} if e["IMAGE"] else e
             for e in result]
    return json.dumps({"result": short}, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images" / "random-red-dots.png")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPE_")}
    with tempfile.TemporaryDirectory(prefix="epe-docs-") as tmp:
        data_dir = Path(tmp) / "data"
        subprocess.run([*EPE, "demo", "--data-dir", str(data_dir)], check=True,
                       env={**env, "EPE_DEMO_PASSWORD": PASSWORD}, capture_output=True,
                       timeout=300)
        proc, url = serve(data_dir, env)
        try:
            with httpx.Client(base_url=url, timeout=120) as c:
                r = c.post(TOKEN_URL, json={"grant_type": "password", "username": "OMLUSER",
                                            "password": PASSWORD})
                r.raise_for_status()
                r = c.post(DO_EVAL, content=BODY, headers={
                    "Authorization": f"Bearer {r.json()['accessToken']}",
                    "Content-Type": "application/json", "Accept": "application/json"})
                if r.status_code != 200:
                    raise SystemExit(f"do-eval failed: {r.status_code} {r.text[:2000]}")
                result = r.json()["result"]
        finally:
            proc.terminate()
            proc.wait(30)
    image = result[0]["IMAGE"]
    if not image:
        raise SystemExit("the call returned no image")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(base64.b64decode(image))
    print(excerpt(result))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
