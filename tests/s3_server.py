"""A local S3 API for tests: moto's standalone server (the one s3fs's own tests use), on an address we choose."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from infra.launch import free_port

MOTO = Path(sys.executable).with_name("moto_server")


class S3Server:
    def __init__(self, host: str = "127.0.0.1", secret: str = "tm-test-secret-0c1d"):
        self.host, self.port, self.secret = host, free_port(), secret
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard variables every S3 client (s3fs, boto3) reads: endpoint, keys, region."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "tokenmilltest",
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self, prefix: list[str] = ()) -> "S3Server":
        self.process = subprocess.Popen([*prefix, str(MOTO), "-H", self.host, "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                opener.open(f"{self.endpoint}/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto_server did not answer on {self.endpoint}")

    def make_bucket(self, name: str) -> None:
        import fsspec

        fsspec.filesystem("s3", skip_instance_cache=True, client_kwargs={"endpoint_url": self.endpoint},
                          key="tokenmilltest", secret=self.secret).mkdir(name)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)


def with_env(extra: dict[str, str]) -> dict[str, str]:
    return dict(os.environ, **extra)
