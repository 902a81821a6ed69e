"""``condor_annex_ec2 -install``: put the single-file command and its systemd units on an image.

Run as root on the machine an annex image is made from::

    sudo python3 condor_annex_ec2.pyz -install [-enable]

It copies the bundle to ``/usr/local/bin/condor_annex_ec2``, the systemd units to
``/etc/systemd/system/`` and the image's HTCondor config to ``/etc/condor/config.d/`` (all
shipped inside the package, under ``annex_ec2/image/``; the checkout's ``image/`` links to
them), then prints the ``systemctl`` commands that enable the units -- or runs them, with
``-enable``.  Nothing is started now: the units act at the image's next boot (started on the
image builder, the bootstrap would look for an annex this machine is not in, and power off).

``-prefix DIR`` installs under DIR instead of ``/``: for tests, or an image mounted at DIR
(``systemctl --root DIR`` then enables the units there).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import pkgutil
import shlex
import sys

from . import bundle, condor

log = logging.getLogger("condor_annex_ec2")

COMMAND_PATH = "usr/local/bin/condor_annex_ec2"
SYSTEMD_DIR = "etc/systemd/system"
CONDOR_CONFIG_DIR = "etc/condor/config.d"
#: Every file of the package's image/ directory, and where it goes on the image.
IMAGE_FILES = {
    "condor-annex-ec2.service": SYSTEMD_DIR,
    "condor-annex-lease.service": SYSTEMD_DIR,
    "condor-annex-lease.timer": SYSTEMD_DIR,
    "condor-annex-interruption.service": SYSTEMD_DIR,
    "20annex-image.config": CONDOR_CONFIG_DIR,
}


def image_file(name: str) -> bytes:
    """A file of the package's image/ directory, from a checkout or from inside the bundle."""
    data = pkgutil.get_data(__package__, f"image/{name}")
    if data is None:
        raise FileNotFoundError(f"{__package__}/image/{name}")
    return data


def units_to_enable() -> list[str]:
    """The units that say how to enable them (an [Install] section): the others are started
    by one of these (the lease service by its timer)."""
    return [name for name, where in IMAGE_FILES.items()
            if where == SYSTEMD_DIR and b"\n[Install]" in image_file(name)]


def running_bundle() -> str | None:
    """The .pyz this code runs from, or None when it runs from a directory."""
    return getattr(__loader__, "archive", None)  # zipimport's loader knows its archive


def _put(path: str, content: bytes, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    condor.replace_file(path, content, mode)


def _install_command(path: str) -> str:
    """Copy the running bundle to ``path`` (or build one there); says where it came from."""
    source = running_bundle()
    if source is None:  # run from a checkout or a pip install: make the bundle now
        os.makedirs(os.path.dirname(path), exist_ok=True)
        bundle.build(path)
        return "built from " + bundle.package_dir()
    with open(source, "rb") as handle:
        _put(path, handle.read(), 0o755)
    return "copied from " + source


def systemctl_commands(prefix: str) -> list[list[str]]:
    units = units_to_enable()
    if os.path.abspath(prefix) == "/":
        return [["systemctl", "daemon-reload"], ["systemctl", "enable", *units]]
    return [["systemctl", "--root", os.path.abspath(prefix), "enable", *units]]


def _warn_without_boto3() -> None:
    if importlib.util.find_spec("boto3") is None:
        log.warning("boto3 is not installed for %s, which runs condor_annex_ec2 at boot: "
                    "install it before making the image (Amazon Linux, RHEL: dnf install -y "
                    "python3-boto3; Debian, Ubuntu: apt-get install -y python3-boto3)",
                    sys.executable)


def install(prefix: str, enable: bool) -> int:
    """Install everything under ``prefix``; the exit status."""
    if os.path.abspath(prefix) == "/" and os.geteuid() != 0:
        log.error("-install writes to /usr/local/bin and /etc: run it as root (sudo)")
        return 1
    command = os.path.join(prefix, COMMAND_PATH)
    print(f"installed {command} ({_install_command(command)})")
    for name, where in IMAGE_FILES.items():
        path = os.path.join(prefix, where, name)
        _put(path, image_file(name), 0o644)
        print(f"installed {path}")
    _warn_without_boto3()
    commands = systemctl_commands(prefix)
    if not enable:
        print("to run them at every boot, run (or install with -enable):")
        for argv in commands:
            print("    " + shlex.join(argv))
        return 0
    for argv in commands:
        print("running: " + shlex.join(argv))
        if not condor.run(shlex.join(argv), "enable the units"):
            return 1
    return 0
