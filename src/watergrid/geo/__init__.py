"""Areas of the district and where a point lies."""
