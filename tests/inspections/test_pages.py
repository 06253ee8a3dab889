"""The inspection pages in Chromium against the app serving the demo campaign: the phone form
(a grid member on a 390 × 844 screen, GPS, a photo, a dropped connection, a reload, a lost
response, the retry), the re-inspection, and the office's pages on a desk screen with the
printed reminder letter. Screenshots and the printed letter go to test-artifacts/."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.inspections.browser import login, no_horizontal_scroll, pdf_pages, print_pdf, shot
from tests.inspections.fixtures import jpeg

pytestmark = pytest.mark.browser

NOTE = "5栋北侧雨水检查井内可见污水流入"


def answer_all(page: Any, answers: dict[str, str]) -> None:
    sets = page.locator("fieldset.check")
    for i in range(sets.count()):
        fs = sets.nth(i)
        value = answers.get(fs.get_attribute("data-code") or "", "ok")
        fs.locator("label", has=page.locator(f"input[value='{value}']")).click()


def test_phone_form_keeps_everything_through_a_failed_submit(phone: Any, live: str) -> None:
    page = phone.page
    login(page, live, "grid01", "/inspections")
    tasks = page.locator("#my-tasks li[data-target]")
    assert tasks.count() >= 1
    assert no_horizontal_scroll(page)
    shot(page, "insp-tasks-phone")
    tasks.first.locator("a.button").click()
    page.wait_for_url(re.compile(r".*/inspections/targets/\d+/inspect$"))
    target_url = page.url.rsplit("/inspect", 1)[0]
    page.locator("#inspect-form[data-ready='1']").wait_for()
    page.locator("#gps-text[data-located='1']").wait_for()
    assert "距登记位置" in page.locator("#gps-text").inner_text()

    answer_all(page, {"D01": "fault", "S06": "na"})
    d01 = page.locator("fieldset[data-code='D01']")
    assert "is-fault" in (d01.get_attribute("class") or "")
    d01.locator("textarea").fill(NOTE)
    d01.locator("select").select_option("on_site")
    d01.locator("input[type=file]").set_input_files(
        files=[
            {"name": "d01.jpg", "mimeType": "image/jpeg", "buffer": jpeg((1600, 1200), exif=True)}
        ]
    )
    page.locator("#inspect-form[data-photos='1']").wait_for()
    assert "13 / 13" in page.locator("#progress").inner_text()
    assert no_horizontal_scroll(page)
    # Viewport shots: a full-page capture draws the sticky submit bar mid-page.
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "insp-form-phone-top", full=False)
    d01.evaluate("el => el.scrollIntoView({block: 'start'})")
    shot(page, "insp-form-phone-fault", full=False)

    # 1. No connection: the submit fails, nothing is lost.
    page.route("**/submit", lambda route: route.abort("internetdisconnected"))
    page.click("#submit-btn")
    page.locator("#inspect-form[data-state='failed']").wait_for()
    assert "保存在本机" in page.locator("#submit-status").inner_text()
    page.locator("#submit-status #retry-btn").wait_for()
    shot(page, "insp-form-failed-phone", full=False)

    # 2. The phone reloads the page: the draft, the GPS fix and the photo come back.
    page.unroute("**/submit")
    page.reload()
    page.locator("#inspect-form[data-ready='1']").wait_for()
    assert "已恢复" in page.locator("#status-banner").inner_text()
    assert page.locator("#inspect-form").get_attribute("data-photos") == "1"
    d01 = page.locator("fieldset[data-code='D01']")
    assert d01.locator("input[value='fault']").is_checked()
    assert d01.locator("textarea").input_value() == NOTE
    assert page.locator("fieldset[data-code='S06'] input[value='na']").is_checked()
    shot(page, "insp-form-restored-phone", full=False)

    # 3. The request arrives but the answer is lost on the way back ...
    def lose_answer(route: Any) -> None:
        route.fetch()
        route.abort("connectionreset")

    page.route("**/submit", lose_answer)
    page.click("#submit-btn")
    page.locator("#inspect-form[data-state='failed']").wait_for()
    page.unroute("**/submit")
    # ... and the retry gets the stored visit back instead of recording a second one.
    page.click("#retry-btn")
    page.wait_for_url(re.compile(r".*/inspections/targets/\d+\?done=initial"))
    assert page.locator(".banner.ok").count() == 1
    assert page.locator("#inspections [data-inspection]").count() == 1
    finding = page.locator("article.finding").first
    assert finding.get_attribute("data-state") == "rectifying"
    assert "D01" in finding.inner_text() and "现场交办" in finding.inner_text()
    assert finding.locator(".thumbs img").count() == 1
    assert no_horizontal_scroll(page)
    shot(page, "insp-target-phone")

    # The draft is gone once the server has the visit.
    page.goto(target_url + "/inspect?kind=initial")
    assert "已恢复" not in page.locator("#status-banner").inner_text()

    # Re-inspection on the phone: the fault is fixed.
    page.goto(target_url)
    page.click("#start-reinspection")
    page.locator("#inspect-form[data-ready='1']").wait_for()
    fs = page.locator("fieldset.check").first
    fs.locator("label", has=page.locator("input[value='passed']")).click()
    fs.locator("input[type=file]").set_input_files(
        files=[{"name": "fixed.jpg", "mimeType": "image/jpeg", "buffer": jpeg((640, 480))}]
    )
    page.locator("#inspect-form[data-photos='1']").wait_for()
    shot(page, "insp-reinspect-phone", full=False)
    page.click("#submit-btn")
    page.wait_for_url(re.compile(r".*\?done=reinspection"))
    finding = page.locator("article.finding").first
    assert finding.get_attribute("data-state") == "verified"
    assert "按时整改" in finding.inner_text()
    assert page.locator("#history li[data-action='verify']").count() == 1


def test_form_refuses_an_incomplete_checklist_on_the_phone(phone: Any, live: str) -> None:
    page = phone.page
    login(page, live, "grid13", "/inspections")
    page.locator("#my-tasks li[data-target] a.button").first.click()
    page.locator("#inspect-form[data-ready='1']").wait_for()
    answer_all(page, {"S01": "fault"})
    page.locator("fieldset[data-code='D07'] input[value='ok']").evaluate("el => el.checked = false")
    page.locator("fieldset[data-code='D07'] input[value='ok']").dispatch_event("change")
    page.click("#submit-btn")
    banner = page.locator("#status-banner .banner.err")
    banner.wait_for()
    assert "未填写完整" in banner.inner_text()
    assert page.locator("fieldset.check.missing").count() == 2  # S01 without a note, D07
    page.wait_for_timeout(800)  # the form scrolls smoothly to the first item to complete
    shot(page, "insp-form-incomplete-phone", full=False)


def test_office_pages_and_the_printed_letter(desk: Any, live: str) -> None:
    page = desk.page
    login(page, live, "drainage", "/inspections")
    page.locator(".campaign-card h2 a").first.click()
    page.locator("#target-map[data-ready='1']").wait_for()
    assert int(page.locator("#target-map").get_attribute("data-markers") or 0) == 89
    assert page.locator("#target-table tbody tr[data-target]").count() == 89
    assert "2019年以来新建住宅小区供排水设施专项排查" in page.locator("h1").inner_text()
    shot(page, "insp-campaign", full=False)

    # A target picked on the map.
    campaign_url = page.url
    page.locator("#add-target summary").click()
    page.locator("#target-map").scroll_into_view_if_needed()
    box = page.locator("#target-map").bounding_box()
    assert box is not None
    # Just off the centre of the district, where no marker sits.
    page.mouse.click(box["x"] + box["width"] * 0.47, box["y"] + box["height"] * 0.52)
    assert page.input_value("#pick-lon") and page.input_value("#pick-lat")
    page.fill("#add-target input[name=code]", "R900")
    page.fill("#add-target input[name=name]", "地图新增小区")
    page.fill("#add-target input[name=property_company]", "深圳市示例物业服务有限公司")
    page.click("#add-target button[type=submit]")
    page.wait_for_url(re.compile(r".*/inspections/targets/\d+$"))
    assert "地图新增小区" in page.locator("h1").inner_text()
    assert page.locator(".st-pending").count() == 1
    page.goto(page.url + "?lang=en")
    assert "Findings" in page.locator("#findings h2").inner_text()
    shot(page, "insp-target-en", full=False)
    page.goto(page.url.split("?")[0] + "?lang=zh_CN")  # the language choice is a cookie
    page.goto(campaign_url)
    page.locator("#letters").scroll_into_view_if_needed()
    shot(page, "insp-campaign-letters", full=False)

    page.click("text=统计报表")
    rows = page.locator("#by-subdistrict tbody tr[data-key]")
    assert rows.count() == 7  # six subdistricts and the total
    assert page.locator("#by-company tbody tr").count() >= 10
    shot(page, "insp-figures")
    with page.expect_download() as dl:
        page.click("#export")
    assert dl.value.suggested_filename.endswith(".xlsx")

    page.go_back()
    page.locator("#letters a").first.click()
    letter = page.locator("#letter")
    number = letter.get_attribute("data-number") or ""
    assert re.fullmatch(r"光水排查函〔\d{4}〕\d+号", number)
    text = letter.inner_text()
    assert "特此函告" in text and "抄送" in text and "不符合要求" in text
    shot(page, "insp-letter")
    pdf = print_pdf(page, "insp-letter")
    assert pdf_pages(pdf) == 1
