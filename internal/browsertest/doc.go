// Package browsertest drives headless Chromium (through chromedp) in tests
// of the portal: it starts the browser with the flags a container needs,
// fails a test on any console error, uncaught exception or non-network error
// log entry (CSP violations among them), and offers small step helpers
// (click, fill, wait for text or a location) and screenshot writing.
//
// It is test support: import it only from _test.go files. A test gets a
// [Browser] from [New], which skips the test when Chromium is missing (and
// fails it when the CI environment variable is set), then runs named steps
// with [Browser.Do] and [Get]; each step has its own timeout, and a failed
// step saves a screenshot and the page's text before stopping the test.
//
// Screenshots go to $FNMARKET_ARTIFACTS_DIR, by default
// <module root>/artifacts/screenshots (see [ArtifactsDir]).
package browsertest
