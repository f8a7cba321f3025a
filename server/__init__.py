"""The server side: the Flower ServerApp, the component registry, the admin API and CLI."""

__all__: list[str] = []
