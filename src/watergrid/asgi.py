"""ASGI entry point for uvicorn: `watergrid.asgi:app`."""

from watergrid.app import create_app

app = create_app()
