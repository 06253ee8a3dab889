"""Users, roles, area scopes, page sessions, API tokens and Open311 API keys."""
