"""The local mirror command that README's offline recipe uses."""

import subprocess
import sys

import requests

from conftest import REPO_ROOT


def test_mirror_command_serves_ranges_like_the_bucket(tmp_path):
    (tmp_path / "flip flops.npy").write_bytes(bytes(range(256)) * 4)
    server = subprocess.Popen([sys.executable, "-u", "-m", "carsketch", "mirror", str(tmp_path), "--port", "0"],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split(" at ")[1].split()[0]
        partial = requests.get(f"{url}/flip%20flops.npy", headers={"Range": "bytes=10-19"}, timeout=10)
        assert partial.status_code == 206 and partial.content == bytes(range(10, 20))
        assert partial.headers["Content-Range"] == "bytes 10-19/1024"
        whole = requests.get(f"{url}/flip%20flops.npy", timeout=10)
        assert whole.status_code == 200 and len(whole.content) == 1024
        assert requests.get(f"{url}/van.npy", timeout=10).status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=10)
