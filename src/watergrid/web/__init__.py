"""Base templates, static assets and language catalogs (zh_CN default, en)."""
