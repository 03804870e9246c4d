// Package web is fnmarket's portal: a small hand-written single-page front end
// (plain HTML, ES modules and CSS, embedded with go:embed) that talks only to
// the public REST API under /api/v1, exactly as outside users do.
//
// Register adds the pages to the API's echo router (api.Deps.Pages). Every page and asset is
// served with a strict Content-Security-Policy (no inline script or style),
// nosniff and a Referrer-Policy. The browser session lives in the API's
// HttpOnly fnm_session cookie; the script echoes the readable fnm_csrf cookie
// in X-CSRF-Token on every state-changing request and keeps no token in
// localStorage. API keys created in the portal are held in memory only.
//
// Assets are served under /assets/<version>/, where version is a hash of all
// embedded assets, so they can be cached for a year; index.html is never
// cached. ES modules import each other by relative path, so the versioned
// prefix needs no rewriting.
//
// The browser tests (browser_test.go) drive Debian's Chromium with chromedp
// against the real API and write screenshots to FNMARKET_ARTIFACTS_DIR
// (default <repo>/artifacts/screenshots).
package web
