"""Browser tests: headless chromium (Playwright) against the real live stack."""
