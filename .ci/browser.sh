#!/usr/bin/env bash
# Debian's Chromium for the report's browser tests (driven by Playwright, tests/test_report_browser.py),
# and a Chinese font for the page to embed. Installed only when missing. Exports
# SPEECHQA_REQUIRE_BROWSER=1 so those tests fail rather than skip when Chromium is absent.

browser_ci_install() {
  if ! command -v chromium >/dev/null || ! fc-list :lang=zh 2>/dev/null | grep -q .; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "browser.sh: installing Debian's chromium and fonts-wqy-microhei" >&2
    $sudo apt-get update -qq >&2 || return 1
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >&2 || return 1
  fi
  export SPEECHQA_REQUIRE_BROWSER=1
}
