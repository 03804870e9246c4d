package browsertest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// WaitTimeout bounds the waits of [WaitText] and [WaitLocation] (within a
// step's own [StepTimeout]).
const WaitTimeout = 10 * time.Second

// Fill sets an input's value as typing would, firing input and change.
func Fill(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		js := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return false;
			el.focus(); el.value = %q; el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, sel, value)
		ok, err := chromedp.Evaluate[bool](js)(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("no element %s", sel)
		}
		return err
	})
}

// WaitLocation waits for the page's URL to end with suffix (a path and
// query, say).
func WaitLocation(suffix string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		ctx, cancel := context.WithTimeout(ctx, WaitTimeout)
		defer cancel()
		var loc string
		for {
			var err error
			if loc, err = chromedp.Location()(ctx, t); err == nil && strings.HasSuffix(loc, suffix) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for location %s (at %s): %w", suffix, loc, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

// WaitText waits until the first element matching the CSS selector exists
// and its text contains want.
func WaitText(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		js := fmt.Sprintf(`(() => { const el = document.querySelector(%q); return !!el && el.textContent.includes(%q); })()`, sel, want)
		if _, err := chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(WaitTimeout))(ctx, t); err != nil {
			got, _ := chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {textContent: '<no element>'}).textContent`, sel))(ctx, t)
			return fmt.Errorf("waiting for %q in %s: %w (text is %q)", want, sel, err, got)
		}
		return nil
	})
}

// Click clicks the first element matching the CSS selector, once visible.
// The element is first scrolled to the middle of the viewport (so a sticky
// header cannot sit over it) and the click waits until the element has stopped
// moving: a page that is still laying out (charts arriving above a button)
// would otherwise take the click somewhere else, as a person's would not.
func Click(sel string) chromedp.Action[chromedp.Void] {
	return Steps(
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			js := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return ''; el.scrollIntoView({block: 'center'});
				const r = el.getBoundingClientRect(); return [r.x, r.y, r.width, r.height].join(','); })()`, sel)
			deadline := time.Now().Add(3 * time.Second)
			last := ""
			for time.Now().Before(deadline) {
				rect, err := chromedp.Evaluate[string](js)(ctx, t)
				if err != nil {
					return err
				}
				if rect != "" && rect == last {
					return nil
				}
				last = rect
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
			return nil
		}),
		chromedp.Click(chromedp.CSS(sel)),
	)
}

// Visible waits until an element matching the CSS selector is visible.
func Visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// TypeKeys types keys into the element matching the CSS selector, as key
// events ("\r" presses Enter).
func TypeKeys(sel, keys string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(sel), keys)
}

// Navigate loads url in the tab.
func Navigate(url string) chromedp.Action[chromedp.Void] { return chromedp.Navigate(url) }

// Steps runs actions one after another as one action, so a sequence can be
// named once and reused.
func Steps(actions ...chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, a := range actions {
			if _, err := a(ctx, t); err != nil {
				return err
			}
		}
		return nil
	})
}
