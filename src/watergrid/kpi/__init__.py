"""KPIs: definitions, rollups, boards, field visits, the annual KPI attack map, exports."""
