"""The dashboard in headless chromium against the live stack: sign in, upload, run, watch live, fail, cancel."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.api_steps import create_flow, start_run, wait_for

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
LIVE_TIMEOUT = 60_000  # ms: a run on the live stack takes well under a second; startup hiccups do not

GREETING = """\
metadata:
  name: Browser greeting
  description: Greets someone, then shouts it
nodes:
  greet:
    type: transform
    params:
      script: "return {greeting: 'hello ' + input.name};"
    next:
      success: shout
      error: report
  shout:
    type: transform
    params:
      script: "console.log('shouting at', input.name); return {loud: input.greeting.toUpperCase()};"
  report:
    type: log
    params:
      message: "greeting failed"
"""

# Line 10 sends `success` to a node that does not exist (which also leaves two nodes without an incoming edge).
BROKEN = GREETING.replace("      success: shout\n", "      success: nowhere\n")

FAILING = """\
metadata:
  name: Browser failing
nodes:
  prepare:
    type: transform
    params: {script: "return {ready: true};"}
    next: {success: explode}
  explode:
    type: transform
    params: {script: "throw new Error('kaboom from the browser test');"}
"""

SLOW = """\
metadata:
  name: Browser slow
nodes:
  pause:
    type: wait
    params: {duration: 60s}
    next: {success: after}
  after: {type: transform, params: {script: "return {done: true};"}}
"""


@pytest.fixture
def browser_errors() -> list[str]:
    """Console errors and uncaught exceptions of every page (a CSP violation shows up here too)."""
    return []


def watch(page, errors: list[str]) -> None:
    page.on("console", lambda message: message.type == "error" and errors.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))


@pytest.fixture
def desktop(chromium, live_stack, live_user, browser_errors) -> Iterator:
    """A signed-in desktop page: the sign-in goes through the login form."""
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=DESKTOP, base_url=live_stack.base_url)
    page = context.new_page()
    watch(page, browser_errors)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.fill("#id_username", live_user.username)
    page.fill("#id_password", live_user.password)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Executions")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    yield page
    context.close()


def shot(page, tmp_path, name: str) -> None:
    page.wait_for_timeout(400)  # let the node colour transitions finish
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_upload_run_and_watch_a_flow_then_see_a_failure(
    desktop, chromium, live_stack, live_api, tmp_path, browser_errors
):
    from playwright.sync_api import expect

    page = desktop
    # given the flows page, when a flow with a broken edge is uploaded
    page.click("nav >> text=Flows")
    page.fill("#flow-content", BROKEN)
    page.click("#create")
    # then the problem is shown at its line, and nothing is created
    expect(page.locator("#flow-content-problems")).to_contain_text("line 10")
    expect(page.locator("#flow-content-problems")).to_contain_text("unknown node 'nowhere'")
    expect(page.locator(".gutter .err", has_text=re.compile(r"^10$"))).to_be_visible()
    expect(page).to_have_url(re.compile(r"/flows$"))
    shot(page, tmp_path, "upload-error-desktop")
    # (the browser logs that 400 answer; it was expected, anything else is not)
    assert all("status of 400" in error for error in browser_errors), browser_errors
    browser_errors.clear()

    # when the fixed flow is uploaded, then its page opens with the graph
    page.fill("#flow-content", GREETING)
    page.click("#create")
    expect(page.locator("h1")).to_have_text("Browser greeting")
    expect(page.locator('g.node[data-node="shout"]')).to_be_visible()
    expect(page.locator(".msg-success")).to_contain_text("created")
    flow_url = page.url

    # when it is run with invalid JSON, then a message is shown and no request is made
    page.fill("#run-input", '{"name": ')
    page.click("#run-button")
    expect(page.locator("#run-error")).to_contain_text("Invalid JSON")
    expect(page).to_have_url(re.compile(r"/flows/[^/]+$"))

    shot(page, tmp_path, "flow-desktop")

    # when it is run with a JSON object
    page.fill("#run-input", '{"name": "ada"}')
    page.click("#run-button")
    # then the execution page follows it live to the end: nodes succeed, the unused one is skipped
    expect(page).to_have_url(re.compile(r"/executions/[0-9a-f-]{36}$"))
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=LIVE_TIMEOUT)
    for node, status in [("greet", "succeeded"), ("shout", "succeeded"), ("report", "skipped")]:
        expect(page.locator(f'#graph g.node[data-node="{node}"]')).to_have_attribute("data-status", status)
    expect(page.locator("#progress-text")).to_have_text("100%")
    expect(page.locator("#document")).to_contain_text('"loud": "HELLO ADA"')
    expect(page.locator("#node-rows tr")).to_have_count(2)
    expect(page.locator("#node-rows")).to_contain_text("w1@")
    expect(page.locator("#log")).to_contain_text("shouting at ada")
    shot(page, tmp_path, "execution-completed-desktop")
    completed_url = page.url

    # given a flow that throws, run over the API
    failing_id = start_run(live_api, create_flow(live_api, FAILING))
    wait_for(live_api, failing_id)
    # when its page is opened, then the error is shown and the failed node is red
    page.goto(f"/executions/{failing_id}")
    expect(page.locator("#status")).to_have_attribute("data-status", "failed")
    expect(page.locator("#error")).to_contain_text("kaboom from the browser test")
    expect(page.locator('#graph g.node[data-node="explode"]')).to_have_attribute("data-status", "failed")
    expect(page.locator('#graph g.node[data-node="prepare"]')).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#node-rows")).to_contain_text("kaboom")
    shot(page, tmp_path, "execution-failed-desktop")

    # when it is re-run from the failure, then a new execution starts at the failed node (and fails again)
    page.click("#rerun")
    expect(page).not_to_have_url(re.compile(failing_id))
    expect(page.locator("#status")).to_have_attribute("data-status", "failed", timeout=LIVE_TIMEOUT)
    expect(page.locator('#graph g.node[data-node="prepare"]')).to_have_attribute("data-status", "skipped")
    expect(page.locator("dl.facts")).to_contain_text(failing_id[:8])

    # and on a phone the same pages are usable
    phone_context = chromium.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        base_url=live_stack.base_url,
        storage_state=page.context.storage_state(),
    )
    phone = phone_context.new_page()
    watch(phone, browser_errors)
    pages = [
        (completed_url, "execution-completed-phone"),
        ("/", "executions-phone"),
        (flow_url, "flow-phone"),
    ]
    for url, name in pages:
        phone.goto(url)
        expect(phone.locator("h1")).to_be_visible()
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name}: the page scrolls sideways ({width}px)"
        shot(phone, tmp_path, name)
    phone_context.close()
    assert browser_errors == []


def test_list_updates_live_and_cancel_works(desktop, live_api, tmp_path, browser_errors):
    from playwright.sync_api import expect

    page = desktop
    # given the executions list is open, when a run starts elsewhere (the API)
    flow_id = create_flow(live_api, GREETING)
    execution_id = start_run(live_api, flow_id, {"name": "bob"})
    # then its row appears without a reload and reaches "completed"
    row = page.locator(f'#execution-rows tr[data-id="{execution_id}"]')
    expect(row).to_have_attribute("data-status", "completed", timeout=LIVE_TIMEOUT)
    expect(row).to_contain_text("Browser greeting")
    shot(page, tmp_path, "executions-desktop")

    # given a slow run's page, when Cancel is clicked twice (the first click only arms it)
    slow_id = start_run(live_api, create_flow(live_api, SLOW))
    page.goto(f"/executions/{slow_id}")
    expect(page.locator("#status")).to_have_attribute("data-status", "running", timeout=LIVE_TIMEOUT)
    page.click("#cancel")
    expect(page.locator("#cancel")).to_have_text("Confirm cancel")
    page.click("#cancel")
    # then the execution is canceled, live, and the button goes away
    expect(page.locator("#status")).to_have_attribute("data-status", "canceled", timeout=LIVE_TIMEOUT)
    expect(page.locator('#graph g.node[data-node="after"]')).to_have_attribute("data-status", "skipped")
    expect(page.locator("#cancel")).to_be_hidden()
    assert live_api.get(f"/executions/{slow_id}").json()["status"] == "canceled"

    # when the flow's YAML is edited on its page, a mistake is shown at its line and a fix is a new version
    page.goto(f"/flows/{flow_id}")
    page.fill("#flow-content", GREETING.replace("type: log", "type: no_such_kind"))
    page.click("#save")
    expect(page.locator("#flow-content-problems")).to_contain_text("line 17")
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    page.fill("#flow-content", GREETING.replace("greeting failed", "greeting went wrong"))
    page.click("#save")
    expect(page.locator(".msg-success")).to_contain_text("version 2")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    # (the browser logs the expected 400 of the first save; nothing else may appear)
    assert all("status of 400" in error for error in browser_errors), browser_errors
