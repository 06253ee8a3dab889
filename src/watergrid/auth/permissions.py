"""Roles and what they may do. Scope (which grid, zone, department) is checked separately,
record by record, through Principal.covers_*."""

from __future__ import annotations

ROLES: dict[str, str] = {
    "public": "公众/企业",
    "grid_member": "网格员/党员",
    "dept_handler": "部门/专业队伍处置人员",
    "chain_leader": "片区链长",
    "liaison": "片区联络员",
    "bureau_leader": "局领导",
    "duty_officer": "防汛值班员",
    "admin": "系统管理员",
}

STAFF = {r for r in ROLES if r != "public"}

# permission -> roles holding it
PERMISSIONS: dict[str, set[str]] = {
    "self.read": set(ROLES),
    "registry.read": STAFF,
    "registry.write": {"admin"},
    "people.contacts": STAFF,
    "users.manage": {"admin"},
    "ops.metrics": {"admin"},
    "inbox.read": STAFF,
    # Work orders (scope is checked per order by workorders.lifecycle).
    "orders.read": STAFF,
    "orders.act": STAFF,
    "orders.create_staff": STAFF,
    "orders.reporter_contact": STAFF,
    "categories.write": {"admin"},
    "supervision.read": STAFF,
    # KPIs. Scope (whose figures) is checked per figure by kpi.service.visible_keys.
    "kpi.read": STAFF,
    "kpi.export": STAFF,
    "visits.read": STAFF,
    "visits.write": {"chain_leader", "liaison", "bureau_leader", "admin"},
    "tasks.read": STAFF,
    "tasks.write": {"bureau_leader", "admin"},
    "tasks.claim": {"bureau_leader", "chain_leader", "liaison", "dept_handler", "admin"},
    # Special inspection campaigns. Scope is checked per target (its grid) and per campaign
    # (its lead department) by inspections.service.
    "insp.read": STAFF,
    "insp.inspect": {
        "grid_member",
        "dept_handler",
        "chain_leader",
        "liaison",
        "bureau_leader",
        "admin",
    },
    "insp.manage": {"dept_handler", "bureau_leader", "admin"},
    # Statutory services (排水报装, 水土保持方案审查). Scope: the service's department, or the
    # whole district (permits.service).
    "permit.read": {"dept_handler", "bureau_leader", "admin"},
    "permit.handle": {"dept_handler", "bureau_leader", "admin"},
    "permit.kpi": STAFF,
    # Flood season: everyone on staff sees the flood picture; the duty officer acts on it.
    "flood.read": STAFF,
    "flood.write": {"duty_officer", "admin"},
    # HTTP batch ingestion; gateways sign in with a token of an account holding it.
    "flood.ingest": {"duty_officer", "admin"},
    # Flood response: the duty officer issues warnings and runs drills and plans; anyone on
    # staff answers their own calls; crews (department handlers) report their tasks.
    "flood.warn": {"duty_officer", "admin"},
    "flood.plans": {"duty_officer", "admin"},
    "flood.calls.answer": STAFF,
    "flood.dispatch": {"duty_officer", "admin", "dept_handler"},
}


def roles_with(permission: str) -> set[str]:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return PERMISSIONS[permission]
