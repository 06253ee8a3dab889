"""Flood season (智慧防汛): assets, sensors and their readings, rolling rainfall and threshold
alarms. See docs/flood-sensors.md for the MQTT topics and payloads.

Modules other domains build on: `assets`, `sensors`, `rain`, `alarms` (services and the
alarm hooks), `ingest` (the batch ingestion core), `mqtt` (`run_consumer`), `schemas`."""
