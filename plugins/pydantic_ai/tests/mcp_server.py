"""A tiny MCP server for the toolset tests, started by them as a subprocess over stdio:
``python mcp_server.py LOG``.

The server runs in another process, so it counts for the tests in ``LOG``: one JSON line per process
start and one per tool execution. While a file ``LOG.crash`` exists and names an item, looking that
item up fails (a crash in the middle of an MCP tool call).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer  # mcp 2.x: the FastMCP server, renamed MCPServer

LOG = Path(sys.argv[1])
CRASH = Path(f"{LOG}.crash")

server = MCPServer("lookups")


def _write(kind: str, value: str) -> None:
    with LOG.open("a") as fh:
        fh.write(json.dumps([kind, value]) + "\n")


@server.tool()
def lookup(item: str) -> str:
    """Look one item up."""
    _write("tool", item)
    if CRASH.exists() and CRASH.read_text() == item:
        raise RuntimeError(f"crash in the MCP tool call for {item}")
    return f"{item}: ok"


if __name__ == "__main__":
    _write("start", str(os.getpid()))
    server.run("stdio")
