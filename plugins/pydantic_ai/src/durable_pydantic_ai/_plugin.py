"""The module registered under the ``durable`` entry-point group.

It implements no hook yet (pydantic-ai's own type adapters do the encoding) and imports
nothing: every ``Workflow()`` loads all plugins, and importing pydantic-ai there would cost
every application a second of start-up whether or not it uses agents.
"""
