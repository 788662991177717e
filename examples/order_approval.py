"""An order-approval service: a workflow waits for a manager's approval delivered over HTTP.

    python examples/order_approval.py

It starts a tiny HTTP server (standard library, 127.0.0.1 only) with
``POST /orders/<id>/approval`` whose handler calls ``wf.complete(...)``, starts the
order workflow, and then plays the manager by sending that request itself.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from durable import Workflow

wf = Workflow("shop", db=str(Path(tempfile.mkdtemp()) / "orders.db"))
log: list[str] = []


@wf.task
async def prepare_order(order_id: str) -> None:
    log.append(f"prepared {order_id}")


@wf.task
async def ship_order(order_id: str) -> None:
    log.append(f"shipped {order_id}")


@wf.workflow(id="order-{order_id}")
async def process_order(order_id: str) -> str:
    await prepare_order(order_id)
    approval = await wf.signal("manager-approval")  # pauses here, durably
    if approval["approved"]:
        await ship_order(order_id)
        return "shipped"
    return "rejected"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The web handler: POST /orders/<id>/approval with a JSON body."""
    request_line = (await reader.readline()).decode()
    headers = {}
    while (line := (await reader.readline()).decode().strip()) != "":
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    method, path, _ = request_line.split(" ", 2)
    parts = path.strip("/").split("/")
    if method == "POST" and len(parts) == 3 and parts[0] == "orders" and parts[2] == "approval":
        delivered = await wf.complete(f"order-{parts[1]}", "manager-approval", json.loads(body))
        status, reply = "200 OK", {"delivered": delivered}
    else:
        status, reply = "404 Not Found", {"error": "no such route"}
    data = json.dumps(reply).encode()
    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    await writer.drain()
    writer.close()


async def post(port: int, path: str, payload: object) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(payload).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    return response.split("\r\n\r\n", 1)[1]


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, wf:
        order = asyncio.ensure_future(process_order(order_id="42"))
        while (run := await wf.get_run("order-42")) is None or run.status.value != "waiting":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print("order-42 is", run.status.value, "for manager-approval")
        print("manager approves:", await post(port, "/orders/42/approval", {"approved": True}))
        print("result:", await order, "| log:", log)
        print("a second click is ignored:", await post(port, "/orders/42/approval", {"approved": False}))


if __name__ == "__main__":
    asyncio.run(main())
