"""IDOR: every route that takes the id, code or key of something is either tried by a user
who holds the route's permission but is outside the record's grid, zone, department or
person — and must get 403/404 and none of the record's data — or is listed with the reason
it has no per-record scope. A new id-taking route fails test_every_id_taking_route_is_covered
until it is added here."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from tests.security.conftest import Deployment
from tests.security.routes import params, routes

from watergrid.settings import get_settings

JSON = {"Accept": "application/json"}
CSV = b"code,name,address,lon,lat\nX1,x,,113.93,22.77\n"


@dataclass(frozen=True)
class Attempt:
    user: str  # holds the route's permission, is outside the record's scope
    url: str
    body: dict[str, Any] | None = None  # JSON body of an API call
    form: dict[str, str] | None = None  # fields of a page form (the CSRF token is added)
    multipart: dict[str, str] | None = None  # form fields of an API call
    files: dict[str, tuple[str, bytes, str]] | None = None
    leak: str = ""  # text of the record that must not appear in the answer


# Routes whose records are not scoped per caller, and why.
UNSCOPED: dict[str, str] = {
    # Public by design: the record is meant for everyone, or the path holds an unguessable
    # secret (a 128-bit key or token handed out only with the record).
    "GET /a/{token}": "public: answer link, unguessable token",
    "POST /a/{token}": "public: answer link, unguessable token",
    "GET /api/v1/categories/{code}": "public: the category list of the report form",
    "GET /api/v1/flood/cap/{identifier}.xml": "public: CAP alerts are published",
    "GET /api/v1/permits/status/{number}": "public: an applicant's tracking page; no personal data",
    "GET /f/{grid_code}": "public: the flood service card posted in the community",
    "GET /s/{code}": "public: the service-card link of a key zone",
    "GET /inspections/static/{name}": "public: a static script",
    "GET /permits/apply/{service_code}": "public: the application form of a statutory service",
    "POST /permits/apply/{service_code}": "public: submitting an application",
    "GET /open311/discovery.{fmt}": "public: Open311 discovery",
    "GET /open311/v2/discovery.{fmt}": "public: Open311 discovery",
    "GET /open311/v2/requests.{fmt}": "public: Open311 list, personal data masked (test_exposure)",
    "POST /open311/v2/requests.{fmt}": "public: Open311 intake",
    "GET /open311/v2/requests/{service_request_id}.{fmt}": "public: Open311, masked",
    "GET /open311/v2/servicerequestupdates.{fmt}": "public: Open311, masked",
    "GET /open311/v2/services.{fmt}": "public: Open311 service list",
    "GET /open311/v2/services/{service_code}.{fmt}": "public: Open311 service definition",
    "GET /open311/v2/tokens/{token}.{fmt}": "public: unguessable token",
    "DELETE /open311/v2/{rest}": "public: the Open311 'unknown path' answer",
    "GET /open311/v2/{rest}": "public: the Open311 'unknown path' answer",
    "PATCH /open311/v2/{rest}": "public: the Open311 'unknown path' answer",
    "POST /open311/v2/{rest}": "public: the Open311 'unknown path' answer",
    "PUT /open311/v2/{rest}": "public: the Open311 'unknown path' answer",
    # Reference data administered by the bureau as a whole (admin only).
    "PATCH /api/v1/categories/{code}": "district-wide: categories, admin only",
    # The flood picture is the whole district's: every staff member sees it (flood.read) and
    # only district-wide roles (duty officer, admin) change it.
    "GET /api/v1/flood/alarms/{alarm_id}": "district-wide flood picture",
    "POST /api/v1/flood/alarms/{alarm_id}/acknowledge": "district-wide, duty/admin",
    "POST /api/v1/flood/alarms/{alarm_id}/clear": "district-wide, duty/admin",
    "GET /api/v1/flood/assets/{code}": "district-wide flood picture",
    "PATCH /api/v1/flood/assets/{code}": "district-wide, duty/admin",
    "GET /api/v1/flood/assets/{code}/thresholds": "district-wide flood picture",
    "PUT /api/v1/flood/assets/{code}/thresholds": "district-wide, duty/admin",
    "GET /api/v1/flood/plans/{code}": "district-wide flood picture",
    "POST /api/v1/flood/plans/{code}/drill": "district-wide, duty/admin",
    "POST /api/v1/flood/plans/{code}/versions": "district-wide, duty/admin",
    "GET /api/v1/flood/plans/{code}/versions/{number}": "district-wide flood picture",
    "GET /flood/plans/{code}": "district-wide flood picture",
    "POST /flood/plans/{code}/drill": "district-wide, duty/admin",
    "GET /api/v1/flood/rain/gauges/{code}/series": "district-wide flood picture",
    "GET /api/v1/flood/rain/subdistricts/{code}/series": "district-wide flood picture",
    "GET /api/v1/flood/rounds/{round_id}": "district-wide flood picture",
    "GET /api/v1/flood/rounds/{round_id}/events": "district-wide flood picture",
    "GET /flood/rounds/{round_id}": "district-wide flood picture",
    "POST /api/v1/flood/rounds/{round_id}/close": "district-wide, duty/admin",
    "POST /flood/rounds/{round_id}/close": "district-wide, duty/admin",
    "GET /api/v1/flood/sensors/{code}": "district-wide flood picture",
    "PATCH /api/v1/flood/sensors/{code}": "district-wide, duty/admin",
    "GET /api/v1/flood/sensors/{code}/readings": "district-wide flood picture",
    "GET /api/v1/flood/service-cards/{grid_code}": "the card is public at /f/{grid_code}",
    "GET /flood/cards/{grid_code}": "the card is public at /f/{grid_code}",
    "PUT /api/v1/flood/service-cards/{grid_code}": "district-wide, duty/admin",
    "PATCH /api/v1/flood/warning-criteria/{criterion_id}": "district-wide, duty/admin",
    "POST /api/v1/flood/warning-suggestions/{suggestion_id}/accept": "district-wide, duty/admin",
    "POST /api/v1/flood/warning-suggestions/{suggestion_id}/dismiss": "district-wide, duty/admin",
    "POST /flood/suggestions/{suggestion_id}/{decision}": "district-wide, duty/admin",
    "GET /api/v1/flood/warnings/{warning_id}": "district-wide flood picture",
    "GET /flood/warnings/{warning_id}": "district-wide flood picture",
    # Checked against the warning's subdistrict (covers_subdistrict), but every demo holder
    # of flood.warn is district-wide, so no demo account is outside the scope.
    "POST /api/v1/flood/warnings/{warning_id}/level": "flood.warn: district-wide holders only",
    "POST /api/v1/flood/warnings/{warning_id}/lift": "flood.warn: district-wide holders only",
    "POST /flood/warnings/{warning_id}/level": "flood.warn: district-wide holders only",
    "POST /flood/warnings/{warning_id}/lift": "flood.warn: district-wide holders only",
    # Crew tasks come from warnings; the demo holds none to try.
    "POST /api/v1/flood/tasks/{task_id}/reassign": "no crew task in the demo",
    "POST /api/v1/flood/tasks/{task_id}/status": "no crew task in the demo",
    "POST /flood/tasks/{task_id}/reassign": "no crew task in the demo",
    "POST /flood/tasks/{task_id}/status": "no crew task in the demo",
    # A campaign is the district's; what is inside it is filtered to the caller's grids
    # (test_campaign_lists_are_filtered_to_the_callers_grids).
    "GET /api/v1/inspections/campaigns/{campaign_id}": "campaign header is district-wide",
    "GET /inspections/campaigns/{campaign_id}": "campaign header is district-wide",
    "GET /api/v1/inspections/campaigns/{campaign_id}/targets": "filtered to the caller's grids",
    "GET /api/v1/inspections/campaigns/{campaign_id}/findings": "filtered to the caller's grids",
    "GET /api/v1/inspections/campaigns/{campaign_id}/letters": "filtered to the caller's grids",
    "GET /api/v1/inspections/campaigns/{campaign_id}/figures": "filtered to the caller's grids",
    "GET /api/v1/inspections/campaigns/{campaign_id}/figures.xlsx": "filtered, as figures",
    "GET /inspections/campaigns/{campaign_id}/figures": "filtered, as figures",
    "GET /api/v1/inspections/campaigns/{campaign_id}/inspectors": "who inspects: staff contacts",
    "GET /api/v1/inspections/photos/{key}": "unguessable key, handed out with its inspection",
    # 揭榜挂帅: an unclaimed key task is an open call to every holder of tasks.claim.
    "POST /api/v1/kpi/tasks/{task_id}/claim": "open call: anyone eligible may claim",
    "POST /kpi/attack-map/tasks/{task_id}/claim": "open call: anyone eligible may claim",
}


def _csrf() -> str:
    # A bearer caller has no session cookie: its token is the one bound to an empty basis
    # (web/render.py). What is tried here is the scope check behind the form, not CSRF.
    key = get_settings().secret_key.encode()
    return hmac.new(key, b"csrf:", hashlib.sha256).hexdigest()[:32]


def attempts(dep: Deployment) -> dict[str, list[Attempt]]:
    oid, number = dep.orders["w01_drain"]
    water_id = dep.orders["w01_water"][0]  # routed to the water-supply section
    photo_order, photo_key = dep.orders["w01_photo"][1], dep.ids["photo_key"]
    with dep.engine.connect() as c:
        target_w01 = c.execute(
            text(
                "SELECT t.id, t.name FROM insp_target t JOIN area a ON a.id = t.grid_id "
                "WHERE a.code = 'W01' ORDER BY t.id"
            )
        ).first()
        finding = c.execute(
            text(
                "SELECT f.id FROM insp_finding f JOIN insp_target t ON t.id = f.target_id "
                "JOIN area a ON a.id = t.grid_id WHERE a.code <> 'W13' ORDER BY f.id"
            )
        ).scalar()
        letter = c.execute(
            text(
                "SELECT l.id FROM insp_letter l JOIN insp_target t ON t.id = l.target_id "
                "JOIN area a ON a.id = t.grid_id WHERE a.code <> 'W13' ORDER BY l.id"
            )
        ).scalar()
        campaign = c.execute(text("SELECT MIN(id) FROM insp_campaign")).scalar()
        # A drainage-connection application (the drainage section's), tried by soil & water.
        app_row = c.execute(
            text(
                "SELECT id, number, project_name FROM permit_application "
                "WHERE service_code = 'drainage_connection' ORDER BY id"
            )
        ).first()
        doc = c.execute(
            text("SELECT key FROM permit_document WHERE application_id = :a"),
            {"a": app_row[0]},
        ).scalar()
        grid13_person = c.execute(
            text("SELECT person_id FROM app_user WHERE username = 'grid13'")
        ).scalar()
        calls = c.execute(text("SELECT id, path FROM flood_call ORDER BY id")).all()
        leader_item = c.execute(
            text(
                "SELECT i.id FROM inbox_item i JOIN app_user u ON u.person_id = i.person_id "
                "WHERE u.username = 'leader' ORDER BY i.id"
            )
        ).scalar()
    assert target_w01 and finding and letter and campaign and app_row and doc and leader_item
    import json

    def reachable(path: object) -> set[int]:
        items = json.loads(path) if isinstance(path, str) else path
        return {int(p["person_id"]) for p in items}  # type: ignore[union-attr]

    not_mine = next(cid for cid, path in calls if grid13_person not in reachable(path))
    tid, tname = target_w01
    app_id, app_number, project = app_row
    task, milestone = dep.ids["kpi_task_id"], dep.ids["milestone_id"]
    return {
        # Work orders: grid13 is not W01's grid member; the drainage section is not the
        # water-supply section the order was routed to.
        "GET /api/v1/orders/{order_id}": [Attempt("grid13", f"/api/v1/orders/{oid}", leak=number)],
        "GET /api/v1/orders/by-number/{number}": [
            Attempt("grid13", f"/api/v1/orders/by-number/{number}", leak="security test order"),
            Attempt("grid13", f"/api/v1/orders/by-number/{photo_order}", leak=photo_key),
        ],
        "POST /api/v1/orders/{order_id}/actions/{action}": [
            Attempt("grid13", f"/api/v1/orders/{oid}/actions/accept", body={}, leak=number),
            Attempt("drainage", f"/api/v1/orders/{water_id}/actions/accept", body={}),
            Attempt("drainage", f"/api/v1/orders/{water_id}/actions/comment", body={"note": "x"}),
        ],
        "GET /orders/{order_id}": [Attempt("grid13", f"/orders/{oid}", leak="security test order")],
        "POST /orders/{order_id}/act": [
            Attempt("grid13", f"/orders/{oid}/act", form={"action": "accept"}),
            Attempt("drainage", f"/orders/{water_id}/act", form={"action": "accept"}),
        ],
        "GET /api/v1/attachments/{key}": [
            # The public copy goes to whoever holds the key; the original only to staff who
            # may read the order.
            Attempt("grid13", f"/api/v1/attachments/{dep.ids['photo_key']}?variant=original"),
        ],
        # Registry cards: grid13 is neither in W01 nor in zone Z01.
        "GET /api/v1/areas/{code}": [Attempt("grid13", "/api/v1/areas/W01", leak="楼村")],
        "GET /api/v1/grids/{code}/card": [Attempt("grid13", "/api/v1/grids/W01/card", leak="楼村")],
        "GET /grids/{code}": [Attempt("grid13", "/grids/W01", leak="楼村")],
        "GET /api/v1/zones/{code}/card": [Attempt("grid13", "/api/v1/zones/Z01/card")],
        "GET /zones/{code}": [Attempt("grid13", "/zones/Z01")],
        "GET /zones/{code}/service-card": [Attempt("grid13", "/zones/Z01/service-card")],
        # Inspections: targets, findings and letters of grids other than W13.
        "GET /api/v1/inspections/targets/{target_id}": [
            Attempt("grid13", f"/api/v1/inspections/targets/{tid}", leak=tname)
        ],
        "GET /api/v1/inspections/targets/{target_id}/events": [
            Attempt("grid13", f"/api/v1/inspections/targets/{tid}/events")
        ],
        "GET /api/v1/inspections/targets/{target_id}/inspections": [
            Attempt("grid13", f"/api/v1/inspections/targets/{tid}/inspections")
        ],
        "POST /api/v1/inspections/targets/{target_id}/inspections": [
            Attempt(
                "grid13",
                f"/api/v1/inspections/targets/{tid}/inspections",
                multipart={"payload": '{"client_key": "securitytest01"}'},
            )
        ],
        "POST /api/v1/inspections/targets/{target_id}/rectifications": [
            Attempt(
                "grid13",
                f"/api/v1/inspections/targets/{tid}/rectifications",
                body={"finding_ids": [finding], "method": "letter"},
            )
        ],
        "GET /inspections/targets/{target_id}": [
            Attempt("grid13", f"/inspections/targets/{tid}", leak=tname)
        ],
        "GET /inspections/targets/{target_id}/inspect": [
            Attempt("grid13", f"/inspections/targets/{tid}/inspect", leak=tname)
        ],
        "POST /inspections/targets/{target_id}/assign": [
            Attempt("grid13", f"/inspections/targets/{tid}/assign", form={"person_code": "P0001"})
        ],
        "POST /inspections/targets/{target_id}/submit": [
            Attempt(
                "grid13",
                f"/inspections/targets/{tid}/submit",
                form={"client_key": "securitytest02"},
            )
        ],
        "GET /api/v1/inspections/findings/{finding_id}": [
            Attempt("grid13", f"/api/v1/inspections/findings/{finding}")
        ],
        "POST /api/v1/inspections/findings/{finding_id}/report-done": [
            Attempt(
                "grid13",
                f"/api/v1/inspections/findings/{finding}/report-done",
                multipart={"note": "已整改"},
            )
        ],
        "POST /inspections/findings/{finding_id}/report-done": [
            Attempt("grid13", f"/inspections/findings/{finding}/report-done", form={"note": "x"})
        ],
        "GET /api/v1/inspections/letters/{letter_id}": [
            Attempt("grid13", f"/api/v1/inspections/letters/{letter}")
        ],
        "GET /inspections/letters/{letter_id}": [
            Attempt("grid13", f"/inspections/letters/{letter}")
        ],
        # Managing a campaign belongs to its lead department; the water company manages
        # campaigns (insp.manage) but does not lead this one.
        "POST /api/v1/inspections/campaigns/{campaign_id}/close": [
            Attempt("watercorp", f"/api/v1/inspections/campaigns/{campaign}/close", body={})
        ],
        "POST /api/v1/inspections/findings/{finding_id}/void": [
            Attempt("watercorp", f"/api/v1/inspections/findings/{finding}/void", body={"note": "x"})
        ],
        "POST /inspections/findings/{finding_id}/void": [
            Attempt("watercorp", f"/inspections/findings/{finding}/void", form={"reason": "x"})
        ],
        "DELETE /api/v1/inspections/campaigns/{campaign_id}/inspectors/{grid_code}/{person_code}": [
            Attempt("watercorp", f"/api/v1/inspections/campaigns/{campaign}/inspectors/W01/P0001")
        ],
        "POST /api/v1/inspections/campaigns/{campaign_id}/inspectors": [
            Attempt(
                "watercorp",
                f"/api/v1/inspections/campaigns/{campaign}/inspectors",
                body={"grid_code": "W01", "person_code": "P0001"},
            )
        ],
        "POST /inspections/campaigns/{campaign_id}/inspectors": [
            Attempt(
                "watercorp",
                f"/inspections/campaigns/{campaign}/inspectors",
                form={"grid_code": "W01", "person_code": "P0001"},
            )
        ],
        "POST /api/v1/inspections/campaigns/{campaign_id}/targets": [
            Attempt(
                "watercorp",
                f"/api/v1/inspections/campaigns/{campaign}/targets",
                body={"code": "X1", "name": "x", "lon": 113.93, "lat": 22.77},
            )
        ],
        "POST /inspections/campaigns/{campaign_id}/targets": [
            Attempt(
                "watercorp",
                f"/inspections/campaigns/{campaign}/targets",
                form={"code": "X1", "name": "x", "lon": "113.93", "lat": "22.77"},
            )
        ],
        "POST /api/v1/inspections/campaigns/{campaign_id}/targets/import": [
            Attempt(
                "watercorp",
                f"/api/v1/inspections/campaigns/{campaign}/targets/import",
                files={"file": ("t.csv", CSV, "text/csv")},
            )
        ],
        "POST /inspections/campaigns/{campaign_id}/import": [
            Attempt(
                "watercorp",
                f"/inspections/campaigns/{campaign}/import",
                form={},
                files={"file": ("t.csv", CSV, "text/csv")},
            )
        ],
        # Permits: the soil & water section is not the drainage section.
        "GET /api/v1/permits/applications/{application_id}": [
            Attempt("soilwater", f"/api/v1/permits/applications/{app_id}", leak=project)
        ],
        "POST /api/v1/permits/applications/{application_id}/actions/{action}": [
            Attempt("soilwater", f"/api/v1/permits/applications/{app_id}/actions/accept", body={})
        ],
        "GET /permits/applications/{application_id}": [
            Attempt("soilwater", f"/permits/applications/{app_id}", leak=project)
        ],
        "POST /permits/applications/{application_id}/act": [
            Attempt("soilwater", f"/permits/applications/{app_id}/act", form={"action": "accept"})
        ],
        "GET /permits/applications/{application_id}/decision": [
            Attempt("soilwater", f"/permits/applications/{app_id}/decision", leak=project)
        ],
        "GET /api/v1/permits/documents/{key}": [
            Attempt("soilwater", f"/api/v1/permits/documents/{doc}")
        ],
        # Calls are answered by the person called (or those on their escalation path).
        "POST /api/v1/flood/calls/{call_id}/answer": [
            Attempt("grid13", f"/api/v1/flood/calls/{not_mine}/answer", body={})
        ],
        "POST /flood/calls/{call_id}/answer": [
            Attempt("grid13", f"/flood/calls/{not_mine}/answer", form={})
        ],
        # Someone else's inbox.
        "POST /api/v1/inbox/{item_id}/read": [
            Attempt("grid13", f"/api/v1/inbox/{leader_item}/read", body={})
        ],
        # Key tasks: edited by their owner and team; the drainage section is neither.
        "POST /api/v1/kpi/tasks/{task_id}/milestones": [
            Attempt(
                "leader",
                f"/api/v1/kpi/tasks/{int(task) + 10_000}/milestones",
                body={"title": "x", "due_date": "2026-12-31"},
            )
        ],
        "PUT /api/v1/kpi/tasks/{task_id}/team": [
            Attempt("drainage", f"/api/v1/kpi/tasks/{task}/team", body={"member_codes": []})
        ],
        "POST /api/v1/kpi/milestones/{milestone_id}/done": [
            Attempt(
                "drainage",
                f"/api/v1/kpi/milestones/{milestone}/done",
                body={"done_date": "2026-11-01", "evidence": "x"},
            )
        ],
        "POST /kpi/attack-map/milestones/{milestone_id}/done": [
            Attempt(
                "drainage",
                f"/kpi/attack-map/milestones/{milestone}/done",
                form={"done_date": "2026-11-01", "evidence": "x"},
            )
        ],
    }


def _id_taking(dep: Deployment) -> set[str]:
    out = set()
    for r in routes(dep.app):
        if params(r.path):
            out.add(f"{r.method} {r.path.replace(':path', '')}")
    return out


def test_every_id_taking_route_is_covered(dep: Deployment) -> None:
    tried = set(attempts(dep))
    assert not tried & set(UNSCOPED), tried & set(UNSCOPED)
    missing = _id_taking(dep) - tried - set(UNSCOPED)
    assert not missing, f"id-taking routes with no scope attempt and no reason: {sorted(missing)}"
    stale = (tried | set(UNSCOPED)) - _id_taking(dep)
    assert not stale, f"listed routes that no longer exist: {sorted(stale)}"


def test_out_of_scope_callers_get_nothing(dep: Deployment) -> None:
    failures = []
    for route, tries in attempts(dep).items():
        for a in tries:
            headers = {**JSON, **dep.headers[a.user]}
            method = route.split()[0]
            if a.form is not None or a.multipart is not None:
                fields = {**a.form, "csrf": _csrf()} if a.form is not None else a.multipart
                r = dep.client.request(
                    method,
                    a.url,
                    headers=headers,
                    data=fields,
                    files=a.files,
                    follow_redirects=False,
                )
            elif a.files is not None:
                r = dep.client.request(method, a.url, headers=headers, files=a.files)
            else:
                r = dep.client.request(
                    method, a.url, headers=headers, json=a.body, follow_redirects=False
                )
            ok = r.status_code in (403, 404)
            if ok and r.headers.get("content-type", "").startswith("application/json"):
                ok = r.json()["error"]["code"] in ("forbidden", "not_found")
            if ok and a.leak and a.leak in r.text:
                ok = False
            if not ok:
                failures.append(f"{route} as {a.user}: {r.status_code} {r.text[:160]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("user", "order", "status"),
    [
        ("grid01", "w01_drain", 200),  # W01's own grid member
        ("grid13", "w13_drain", 200),
        ("drainage", "w13_drain", 200),  # routed to the drainage section
        ("grid13", "w01_drain", 403),
        ("drainage", "w01_water", 403),
        ("watercorp", "w13_drain", 403),
    ],
)
def test_order_scope_both_ways(dep: Deployment, user: str, order: str, status: int) -> None:
    """The attempts above are refused because of scope, not because the route refuses
    everyone: the same route answers those in scope."""
    oid = dep.orders[order][0]
    assert dep.client.get(f"/api/v1/orders/{oid}", headers=dep.headers[user]).status_code == status


def test_campaign_lists_are_filtered_to_the_callers_grids(dep: Deployment) -> None:
    campaign = dep.ids["campaign_id"]
    mine = dep.client.get(
        f"/api/v1/inspections/campaigns/{campaign}/targets", headers=dep.headers["grid13"]
    ).json()
    everyone = dep.client.get(
        f"/api/v1/inspections/campaigns/{campaign}/targets", headers=dep.headers["admin"]
    ).json()
    assert mine and len(everyone) > len(mine)
    with dep.engine.connect() as c:
        w13 = set(
            c.execute(
                text(
                    "SELECT t.id FROM insp_target t JOIN area a ON a.id = t.grid_id "
                    "WHERE a.code = 'W13'"
                )
            ).scalars()
        )
    assert {t["id"] for t in mine} <= w13
