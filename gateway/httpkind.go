package gateway

import (
	"context"
	"encoding/json"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
)

// BackendHTTP is the type of HTTP backends.
const BackendHTTP = "http"

// HTTPKind is the "http" backend kind: a function served at a URL, which the
// gateway's built-in reverse proxy calls. Its URL is checked here only
// (parseUpstreamURL, and the private-address guard unless AllowPrivate).
type HTTPKind struct {
	// AllowPrivate accepts URLs whose host is a loopback, private or
	// reserved address (Config.AllowPrivateUpstreams).
	AllowPrivate bool
}

var _ backend.Kind = HTTPKind{}

// httpSpec is what an http backend keeps: {"url": ...}.
type httpSpec struct {
	URL string `json:"url"`
}

// Type is "http".
func (HTTPKind) Type() string { return BackendHTTP }

// Prepare checks the URL's form and, when the rest of the request is valid,
// where its host resolves.
func (k HTTPKind) Prepare(ctx context.Context, v fnmarket.Validation, doc json.RawMessage) json.RawMessage {
	var in struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	}
	if !backend.Decode(v, doc, &in) {
		return nil
	}
	if _, problem := parseUpstreamURL(in.URL); problem != "" {
		v.Add(upstreamURLField, problem)
		return nil
	}
	if len(v) == 0 {
		// Resolving a host is slow; only do it for otherwise valid input.
		if err := CheckUpstreamURL(ctx, in.URL, k.AllowPrivate); err != nil {
			for f, m := range fnmarket.ErrorFields(err) {
				v.Add(f, m)
			}
			if len(fnmarket.ErrorFields(err)) == 0 {
				v.Add(upstreamURLField, fnmarket.ErrorMessage(err))
			}
		}
	}
	return backend.Spec(httpSpec{URL: in.URL})
}

// Schema lists the url field.
func (HTTPKind) Schema() backend.Schema {
	url := map[string]any{"type": "string"}
	return backend.Schema{Input: map[string]any{"url": url}, Stored: map[string]any{"url": url}}
}
