"""A fake EC2 instance metadata service (IMDSv2 only) on 127.0.0.1, for the bootstrap tests.

Point ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` at :attr:`FakeImds.url`.  Like the real one it
refuses reads without a session token; ``fail_next`` makes the next N requests answer 503.
"""
from __future__ import annotations

import http.server
import json
import secrets
import threading


class FakeImds:
    def __init__(self, instance_id: str, region: str, instance_profile_arn: str):
        self.documents = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/dynamic/instance-identity/document": json.dumps(
                {"instanceId": instance_id, "region": region}),
            "/latest/meta-data/iam/info": json.dumps(
                {"Code": "Success", "InstanceProfileArn": instance_profile_arn}),
        }
        self.tokens: set[str] = set()
        self.fail_next = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _failing(self) -> bool:
        with self._lock:
            self.requests += 1
            if self.fail_next:
                self.fail_next -= 1
                return True
        return False

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: str = "") -> None:
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_PUT(self) -> None:
                if fake._failing():
                    return self._answer(503)
                if self.path != "/latest/api/token" or \
                        not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._answer(400)
                token = secrets.token_hex(16)
                fake.tokens.add(token)
                self._answer(200, token)

            def do_GET(self) -> None:
                if fake._failing():
                    return self._answer(503)
                if self.headers.get("X-aws-ec2-metadata-token") not in fake.tokens:
                    return self._answer(401)
                document = fake.documents.get(self.path)
                self._answer(200, document) if document is not None else self._answer(404)

        return Handler
