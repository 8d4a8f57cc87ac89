"""Browser tests: a real studio process driven through real Chromium (Playwright, Debian's /usr/bin/chromium).
Skipped when Chromium is missing unless ODEO_REQUIRE_BROWSER=1 (set by .ci/run), which makes that a failure.

Fixtures from tests/support/browser.py (`chromium`, `page`, `shot`, `studio_server`, `start_studio`, `demo_inputs`)
and tests/support/previews.py (`preview_studio`); screenshots land in test-artifacts/screenshots/."""
