"""Work orders: categories, intake, routing, lifecycle, deadlines, duplicates, attachments.
Other domains (open311, pages, kpi) use `workorders.service` and `workorders.schemas`."""
