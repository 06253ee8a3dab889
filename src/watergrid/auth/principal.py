"""The signed-in user as the rest of the code sees it: roles plus the areas and departments
they act for. Built once per request from the database (auth/service.py: load_principal)."""

from __future__ import annotations

from dataclasses import dataclass, field

from watergrid.auth.permissions import roles_with


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    display_name: str
    roles: frozenset[str]
    person_id: int | None = None
    district: bool = False
    subdistrict_ids: frozenset[int] = field(default_factory=frozenset)
    grid_ids: frozenset[int] = field(default_factory=frozenset)
    zone_ids: frozenset[int] = field(default_factory=frozenset)
    department_ids: frozenset[int] = field(default_factory=frozenset)
    # Derived at load time from the registry so checks need no further queries:
    # every grid and zone this user's area scopes reach.
    reach_grid_ids: frozenset[int] = field(default_factory=frozenset)
    reach_zone_ids: frozenset[int] = field(default_factory=frozenset)

    def can(self, permission: str) -> bool:
        return bool(self.roles & roles_with(permission))

    @property
    def is_staff(self) -> bool:
        return bool(self.roles - {"public"})

    def covers_grid(self, grid_id: int) -> bool:
        # Department staff serve the whole district, so they may read any area's card.
        return self.district or bool(self.department_ids) or grid_id in self.reach_grid_ids

    def covers_zone(self, zone_id: int) -> bool:
        return self.district or bool(self.department_ids) or zone_id in self.reach_zone_ids

    def covers_subdistrict(self, subdistrict_id: int) -> bool:
        return self.district or bool(self.department_ids) or subdistrict_id in self.subdistrict_ids

    def covers_department(self, department_id: int) -> bool:
        return self.district or department_id in self.department_ids
