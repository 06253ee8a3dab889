"""Every text the inspection and permit pages ask for exists in both catalogs (a missing key
would show as the bare key), including the keys built from states, methods and actions."""

from __future__ import annotations

import re
from pathlib import Path

from watergrid.inspections.history import ACTIONS as INSP_ACTIONS
from watergrid.inspections.schemas import (
    ANSWER_LABELS,
    METHOD_LABELS,
    SEVERITY_LABELS,
    STATE_LABELS,
)
from watergrid.permits.schemas import STATE_LABELS as PERMIT_STATES
from watergrid.permits.service import TRANSITIONS
from watergrid.web.i18n import catalog

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "watergrid" / "web" / "templates"
LITERAL = re.compile(r"""t\('((?:insp|permit)\.[a-z0-9_.]+)'""")


def used_keys() -> set[str]:
    keys: set[str] = set()
    for folder in ("inspections", "permits"):
        for path in (TEMPLATES / folder).glob("*.html"):
            keys |= {
                k for k in LITERAL.findall(path.read_text(encoding="utf-8")) if not k.endswith(".")
            }
    keys |= {f"insp.state.{s}" for s in STATE_LABELS}
    keys |= {f"insp.method.{m}" for m in (*METHOD_LABELS, "unassigned")}
    keys |= {f"insp.severity.{s}" for s in SEVERITY_LABELS}
    keys |= {f"insp.answer.{a}" for a in ANSWER_LABELS}
    keys |= {f"insp.kind.{k}" for k in ("initial", "reinspection")}
    keys |= {f"insp.filter.{f}" for f in ("all", "pending", "inspected", "open")}
    keys |= {
        f"insp.done.{d}"
        for d in ("assign", "report", "void", "inspector", "initial", "reinspection", "import")
    }
    keys |= {f"permit.state.{s}" for s in PERMIT_STATES}
    keys |= {f"permit.action.{a}" for a in TRANSITIONS}
    keys |= {f"permit.done.{a}" for a in (*TRANSITIONS, "supplement")}
    keys |= {f"permit.reasons_hint.{a}" for a in ("approve", "refuse", "not_accept")}
    keys |= {f"permit.view.{v}" for v in ("open", "overdue", "all")}
    keys |= {
        f"permit.role.{r}"
        for r in ("applicant", "system", "admin", "bureau_leader", "dept_handler")
    }
    return keys


def test_every_key_is_in_both_catalogs() -> None:
    keys = used_keys()
    assert len(keys) > 250
    for lang in ("zh_CN", "en"):
        missing = sorted(k for k in keys if not catalog(lang).get(k))
        assert not missing, f"{lang} lacks {missing}"
    mine = {k for k in catalog("zh_CN") if k.startswith(("insp.", "permit."))}
    assert mine == {k for k in catalog("en") if k.startswith(("insp.", "permit."))}
    assert set(INSP_ACTIONS) >= {"create", "assign", "verify", "escalate"}


def test_placeholders_match_between_languages() -> None:
    fields = re.compile(r"\{(\w+)\}")
    for key, zh in catalog("zh_CN").items():
        if key.startswith(("insp.", "permit.")):
            assert set(fields.findall(zh)) == set(fields.findall(catalog("en")[key])), key
