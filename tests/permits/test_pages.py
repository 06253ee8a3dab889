"""The statutory-service pages in Chromium against the app serving the demo: an enterprise
applies on a phone (a refused submit keeps every field and file), keeps its number and query
code, tracks progress publicly; the section asks for corrections on a desk screen, the
applicant supplies them on the phone, the section accepts and approves, and prints the
decision document. Screenshots and the printed decision go to test-artifacts/."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.inspections.browser import login, no_horizontal_scroll, pdf_pages, print_pdf, shot

from watergrid.permits.demo import blank_pdf, credit_code

pytestmark = pytest.mark.browser

PDF = blank_pdf("scan")
DOCS = ("application_form", "business_licence", "planning_permit", "drainage_drawings")


def fill_application(page: Any, code: str) -> None:
    page.fill("input[name=project_name]", "光明科学城测试项目排水接驳")
    page.fill("input[name=project_address]", "光明区光明街道测试路8号")
    # Place the project by clicking the district on the map.
    page.locator("#pick-map[data-ready='1']").wait_for()
    box = page.locator("#pick-map path.leaflet-interactive").first.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.45)
    assert page.input_value("#pick-lon") and page.input_value("#pick-lat")
    page.fill("input[name=applicant_name]", "深圳市测试科技有限公司")
    page.fill("input[name=credit_code]", code)
    page.fill("input[name=contact_name]", "赵工")
    page.fill("input[name=contact_phone]", "137 0000 8888")
    page.check("input[name=sms_consent]")
    page.select_option("select[name=discharge_type]", "both")
    page.fill("input[name=sewage_m3_per_day]", "60")
    for doc in DOCS:
        page.set_input_files(
            f"input[name=doc__{doc}]",
            files=[{"name": f"{doc}.pdf", "mimeType": "application/pdf", "buffer": PDF}],
        )


def test_apply_on_a_phone_then_track_correct_and_decide(phone: Any, desk: Any, live: str) -> None:
    page = phone.page
    page.goto(f"{live}/permits")
    assert page.locator("[data-service]").count() == 2
    assert no_horizontal_scroll(page)
    shot(page, "permit-services-phone")
    page.click("[data-service='drainage_connection'] a.button")
    page.wait_for_url(f"{live}/permits/apply/drainage_connection")

    # A mistyped credit code: refused, and nothing typed or chosen is lost.
    good = credit_code(777)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    fill_application(page, bad)
    assert no_horizontal_scroll(page)
    shot(page, "permit-apply-phone")
    page.click("#apply-btn")
    page.locator("#apply-form[data-state='rejected']").wait_for()
    assert "统一社会信用代码" in page.locator("#apply-banner").inner_text()
    assert page.input_value("input[name=project_name]") == "光明科学城测试项目排水接驳"
    assert (
        page.evaluate("document.querySelector('input[name=doc__drainage_drawings]').files.length")
        == 1
    )
    shot(page, "permit-apply-error-phone", full=False)

    page.fill("input[name=credit_code]", good)
    page.click("#apply-btn")
    page.wait_for_url(f"{live}/permits/my")
    number = page.locator("#receipt-number").inner_text().strip()
    token = page.locator("#receipt-token").inner_text().strip()
    assert re.fullmatch(r"PSBZ-\d{4}-\d{5}", number)
    assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}", token)
    assert page.locator("#applicant").get_attribute("data-state") == "submitted"
    assert "10" in page.locator("#clock").inner_text()
    shot(page, "permit-receipt-phone")

    # Anyone with the number sees the progress, and nothing personal.
    page.goto(f"{live}/permits/track?number={number.lower()}")
    status = page.locator("#status")
    assert status.get_attribute("data-state") == "submitted"
    assert "赵工" not in status.inner_text() and "8888" not in status.inner_text()
    shot(page, "permit-track-phone")
    assert page.goto(f"{live}/permits/track?number=PSBZ-2000-99999").status == 404  # type: ignore[union-attr]

    # The section asks for corrections (desk screen): the clock stops.
    office = desk.page
    login(office, live, "drainage", "/permits/desk")
    office.locator(f"#applications tr[data-number='{number}'] a").click()
    office.locator("#correction-box summary").click()
    office.check("#correction-box input[value='drainage_drawings']")
    office.fill(
        "#correction-box textarea[name=note]",
        "排水设计图未标明雨水、污水接驳井位置及管径，请补充后重新上传。",
    )
    office.click("#correction-box button[type=submit]")
    office.wait_for_url(re.compile(r".*done=request_correction"))
    assert office.locator("#application").get_attribute("data-state") == "correction"
    assert office.locator("#clock").get_attribute("data-paused") == "1"
    shot(office, "permit-staff-correction")

    # The applicant supplies them on the phone with the number and the query code.
    page.goto(f"{live}/permits/my?number={number}")
    page.fill("input[name=token]", token.replace("-", " ").upper())  # typed off the receipt
    page.click("button[type=submit]")
    corrections = page.locator("#corrections")
    assert "接驳井位置" in corrections.inner_text()
    assert page.locator("#clock").get_attribute("data-paused") == "1"
    shot(page, "permit-corrections-phone")
    page.set_input_files(
        "#corrections input[name=doc__drainage_drawings]",
        files=[{"name": "drawings-v2.pdf", "mimeType": "application/pdf", "buffer": PDF}],
    )
    page.click("#corrections button[type=submit]")
    assert page.locator("#applicant").get_attribute("data-state") == "submitted"
    assert page.locator("#clock").get_attribute("data-paused") == "0"
    assert "补正材料已提交" in page.locator(".banner.ok").inner_text()

    # Accept, approve with conditions, print the decision.
    office.reload()
    office.click("#accept-btn")
    office.wait_for_url(re.compile(r".*done=accept"))
    office.locator("#approve-box summary").click()
    office.fill(
        "#approve-box textarea[name=conditions]", "按核准的排水设计图施工\n接驳完成后报我局验收"
    )
    office.click("#approve-box button[type=submit]")
    office.wait_for_url(re.compile(r".*done=approve"))
    assert office.locator("#application").get_attribute("data-state") == "approved"
    history = office.locator("#history li[data-action]")
    assert [history.nth(i).get_attribute("data-action") for i in range(history.count())] == [
        "submit",
        "request_correction",
        "supplement",
        "accept",
        "approve",
    ]
    shot(office, "permit-staff-approved")
    office.click("#decision-link")
    doc = office.locator("#decision")
    assert doc.get_attribute("data-outcome") == "approved"
    text = doc.inner_text()
    assert "准予行政许可决定书" in text and number in text and "城镇排水与污水处理条例" in text
    assert re.search(r"光水许准〔\d{4}〕\d+号", text)
    assert "补正期间" in text and "不计入办理时限" in text
    shot(office, "permit-decision")
    assert pdf_pages(print_pdf(office, "permit-decision")) == 1

    page.goto(f"{live}/permits/track?number={number}")
    assert page.locator("#status").get_attribute("data-state") == "approved"


def test_desk_lists_and_refusal_document(desk: Any, live: str) -> None:
    page = desk.page
    login(page, live, "drainage", "/permits/desk")
    assert page.locator("#kpi .stat").count() == 4
    page.click("text=全部")
    rows = page.locator("#applications tr[data-number]")
    assert rows.count() >= 3
    shot(page, "permit-desk")
    refused = page.locator("#applications tr", has=page.locator("[data-state='refused']")).first
    refused.locator("a").first.click()
    page.click("#decision-link")
    doc = page.locator("#decision")
    assert doc.get_attribute("data-outcome") == "refused"
    text = doc.inner_text()
    assert "不予行政许可决定书" in text and "行政复议" in text and "第三十八条第二款" in text
    shot(page, "permit-decision-refused")
    assert pdf_pages(print_pdf(page, "permit-decision-refused")) == 1
    # Another section's application is out of scope.
    page.goto(f"{live}/permits/desk?view=all")
    assert page.locator("#applications tr[data-number^='STBC']").count() == 0
