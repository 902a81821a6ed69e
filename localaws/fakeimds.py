"""A fake EC2 instance metadata service (IMDSv2 only) on 127.0.0.1, for the instance tests.

Point ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` at :attr:`FakeImds.url`.  Like the real one it
refuses reads without a session token and answers 404 for a document it does not have;
``fail_next`` makes the next N requests answer 503.  A Spot instance's notices are set and
cleared with :meth:`FakeImds.notify_interruption` and :meth:`FakeImds.recommend_rebalance`.
"""
from __future__ import annotations

import http.server
import json
import secrets
import threading


LIFE_CYCLE = "/latest/meta-data/instance-life-cycle"
INSTANCE_ACTION = "/latest/meta-data/spot/instance-action"
REBALANCE = "/latest/meta-data/events/recommendations/rebalance"


class FakeImds:
    def __init__(self, instance_id: str, region: str, instance_profile_arn: str,
                 life_cycle: str | None = "spot"):
        self.documents = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/dynamic/instance-identity/document": json.dumps(
                {"instanceId": instance_id, "region": region}),
            "/latest/meta-data/iam/info": json.dumps(
                {"Code": "Success", "InstanceProfileArn": instance_profile_arn}),
        }
        self.set_life_cycle(life_cycle)
        self.tokens: set[str] = set()
        self.fail_next = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # close() is noticed within 0.05 s (socketserver's default, 0.5 s, was paid by every
        # instance a test boots).
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def _set(self, path: str, document: str | None) -> None:
        """Serve ``document`` at ``path``; None: answer 404 there."""
        if document is None:
            self.documents.pop(path, None)
        else:
            self.documents[path] = document

    def set_life_cycle(self, life_cycle: str | None) -> None:
        """"spot" or "on-demand" as AWS says it; None: no such document (404)."""
        self._set(LIFE_CYCLE, life_cycle)

    def notify_interruption(self, action: str | None, time: str = "") -> None:
        """Give the two-minute Spot interruption notice (``action``: terminate, stop or
        hibernate, at ``time``, ISO 8601); None withdraws it."""
        self._set(INSTANCE_ACTION, None if action is None else
                  json.dumps({"action": action, "time": time}))

    def recommend_rebalance(self, notice_time: str | None) -> None:
        """Give a rebalance recommendation made at ``notice_time``; None withdraws it."""
        self._set(REBALANCE, None if notice_time is None else
                  json.dumps({"noticeTime": notice_time}))

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
