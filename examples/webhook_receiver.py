"""A webhook receiver that verifies Switchyard's signatures with the `standardwebhooks`
package (pip install standardwebhooks), answering 204 to good deliveries and 400 to bad ones.

    SWITCHYARD_WEBHOOK_SECRET=whsec_... python3 examples/webhook_receiver.py 8000

Then create an endpoint for http://127.0.0.1:8000/ (allowed in `switchyard dev`).
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["SWITCHYARD_WEBHOOK_SECRET"])
seen = set()  # dedupe on webhook-id: a delivery can arrive more than once


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = webhook.verify(body, headers)  # checks the signature and the ±5 min window
        except WebhookVerificationError as e:
            self.send_response(400)
            self.end_headers()
            print(f"rejected: {e}", file=sys.stderr)
            return
        if headers["webhook-id"] not in seen:
            seen.add(headers["webhook-id"])
            print(json.dumps(event))
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
