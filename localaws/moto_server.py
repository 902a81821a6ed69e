"""moto's server as a child process on 127.0.0.1, on a free port, with AWS-like validation."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from .children import spawn, wait_until_ready

#: Make moto reject unknown AMIs, instance types and key pairs, as AWS does.
VALIDATION_ENV = {
    "MOTO_ENABLE_AMI_VALIDATION": "true",
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
    "MOTO_ENABLE_KEYPAIR_VALIDATION": "true",
}

#: Fake credentials for everything that talks to the emulator.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


#: The images of moto's base list that the examples, the tests, the demo and the benchmark
#: launch (tests/test_moto_main.py checks that every moto image they name is here).
IMAGES = ("ami-1e749f67", "ami-12c6146b")


def motos_base_images() -> list[dict]:
    """moto's own list of base images (its ``ec2/resources/amis.json``), as moto ships it."""
    spec = importlib.util.find_spec("moto")
    assert spec is not None and spec.submodule_search_locations, "moto is not installed"
    resources = os.path.join(list(spec.submodule_search_locations)[0], "ec2", "resources")
    packed = os.path.join(resources, "amis.json.gz")  # moto 5.1 shipped it uncompressed
    if os.path.exists(packed):
        with gzip.open(packed, "rt", encoding="utf-8") as src:
            return json.load(src)
    with open(os.path.join(resources, "amis.json"), encoding="utf-8") as src:
        return json.load(src)


def base_images_file(directory: str, port: int) -> str:
    """The images of moto's own base list (its ``amis.json``: 44 images) that this project
    launches (:data:`IMAGES`), written to ``directory`` for ``MOTO_AMIS_PATH``.

    moto registers every image of the file, each with a volume and a snapshot, every time an
    EC2 backend is made: on its first call after each reset, that is, in nearly every test.
    Without ``MOTO_AMIS_PATH`` that was also each region's "latest" and ECS images (1,301 in
    us-east-1: 0.3 s of the server's time a test); with the whole base list, 44 images, still
    3% of the emulator's CPU in the suite.  An image not listed is refused as on AWS
    (validation is on), so a test naming another fails clearly.
    """
    images = [image for image in motos_base_images() if image["ami_id"] in IMAGES]
    assert len(images) == len(IMAGES), f"moto's base images changed: {IMAGES}"
    path = os.path.join(directory, f"moto-base-images-{port}.json")
    with open(path, "w", encoding="utf-8") as out:
        json.dump(images, out)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """``with MotoServer() as aws: aws.url`` -- started on enter, stopped on exit."""

    def __init__(self, log_path: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "MotoServer":
        # moto's request recorder writes to a file in its working directory unless told
        # where: keep it out of the checkout.
        workdir = os.path.dirname(self._log_path) if self._log_path else tempfile.gettempdir()
        recording = os.path.join(workdir, f"moto-recording-{self.port}")
        images = {} if "MOTO_AMIS_PATH" in os.environ else {
            "MOTO_AMIS_PATH": base_images_file(workdir, self.port)}
        self._process = spawn(
            [sys.executable, "-m", "localaws.moto_main", "-H", "127.0.0.1",
             "-p", str(self.port)],
            {**os.environ, **VALIDATION_ENV, **FAKE_CREDENTIALS, **images,
             "MOTO_RECORDER_FILEPATH": recording}, self._log_path)
        try:
            wait_until_ready(self._process, self._answers, f"moto server on {self.url}", timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1).close()
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    def reset(self) -> None:
        """Forget every resource (the server keeps running)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def seed(self, value: int) -> None:
        """Seed moto's random IDs: the resources made next get the same IDs every time."""
        request = urllib.request.Request(f"{self.url}/moto-api/seed?a={value}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:  # moto's server can take seconds to exit on SIGTERM; it keeps nothing
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
