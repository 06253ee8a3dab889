"""Statutory services (行政许可): drainage connection applications (排水报装) and
soil-and-water conservation plan reviews (水土保持方案审查) — online application with the
documents each needs, completeness check, correction requests (补正, the statutory clock
stops), decision with reasons, a printable decision document, statutory limits in working
days on the shared timers, public status tracking, and on-time completion for the KPIs.
Other domains use `permits.service` (kpi: `on_time_summary`) and `permits.schemas`."""
