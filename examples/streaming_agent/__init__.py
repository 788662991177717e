"""A durable agent streamed to a web page, live and resumable (issue 18): see ``__main__``.

``agent`` is what workers run, ``web`` the ASGI app (Starlette) relaying the run's stream as
Server-Sent Events, ``page.html`` the page, ``client`` a non-browser client.
"""
