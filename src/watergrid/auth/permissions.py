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
}


def roles_with(permission: str) -> set[str]:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return PERMISSIONS[permission]
