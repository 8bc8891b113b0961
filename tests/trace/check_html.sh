#!/bin/sh
# tests/trace/check_html.sh - the HTML report is self-contained, runs its script without error
# in headless Chromium (body data-ok="1"), draws one bar per task run, and screenshots.
# Usage: check_html.sh GENERATOR OUTDIR
. "$(dirname "$0")/common.sh"
CHROME=
for c in chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then CHROME=$c; break; fi
done
[ -n "$CHROME" ] || { echo "SKIP: chromium is not installed"; exit 77; }
generate
H=$OUT/trace.html
if grep -Eq '(src|href)="?(https?:)?//' "$H"; then fail "the report refers to the network"; fi
if grep -q '<script[^>]*src=' "$H"; then fail "the report loads an external script"; fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chrome() {
    timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" "$@"
}
chrome --dump-dom "file://$H" >"$OUT/dom.html" 2>"$OUT/chrome.log" \
    || { tail -20 "$OUT/chrome.log" >&2; fail "chromium --dump-dom failed"; }
grep -q '<body[^>]*data-ok="1"' "$OUT/dom.html" || fail "the report script did not finish (no data-ok)"
bars=$(grep -o '<rect class="bar[" ]' "$OUT/dom.html" | wc -l)
eq "$bars" "$RUNS" "bars in the Gantt chart"
grep -q 'id="fns"' "$OUT/dom.html" || fail "no function table"
chrome --screenshot="$OUT/report.png" --window-size=1400,900 "file://$H" >>"$OUT/chrome.log" 2>&1 \
    || fail "chromium --screenshot failed"
[ -s "$OUT/report.png" ] || fail "no screenshot"
echo "ok: $bars bars, screenshot $OUT/report.png"
