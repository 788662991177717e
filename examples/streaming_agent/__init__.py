"""A durable agent streamed to a web page, live and resumable (issue 18): see ``__main__``.

``agent`` is the durable pydantic-ai agent the workers run, ``web`` the ASGI app (Starlette)
relaying a run's stream as Server-Sent Events, ``page.html`` the page, ``client`` a client
without a browser.
"""
