"""Open311 GeoReport v2 at /open311/v2/: an adapter over the work-order service. It maps
parameters and answers between the GeoReport shapes and `workorders.service`; every rule
(validation, routing, deadlines, idempotency, privacy) stays in the work-order service."""
