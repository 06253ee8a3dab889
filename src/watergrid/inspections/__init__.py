"""Special inspection campaigns (专项排查): campaigns with checklist templates, targets,
inspectors by grid, field inspections, findings, rectification items (现场交办 / 发函提醒 /
技术指导) with deadlines on the shared timers, numbered reminder letters and figures.
Other domains use `inspections.service`, `inspections.figures` and `inspections.schemas`."""
