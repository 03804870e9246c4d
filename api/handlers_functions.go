package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/catalog"
)

// versionInput is the part of a request that defines a version.
type versionInput struct {
	Backend            jsontext.Value        `json:"backend"` // read by its kind
	Pricing            *catalog.PricingInput `json:"pricing"`
	TimeoutMs          *int                  `json:"timeout_ms"`
	RateLimitPerSecond *int                  `json:"rate_limit_per_second"`
}

// DefaultTimeoutMs is a version's timeout when the vendor names none.
const DefaultTimeoutMs = 10_000

func (s *Server) parseVersion(ctx context.Context, v fnmarket.Validation, in versionInput) catalog.NewVersion {
	nv := catalog.NewVersion{TimeoutMs: DefaultTimeoutMs}
	nv.Pricing = in.Pricing.Parse(v)
	if in.TimeoutMs != nil {
		nv.TimeoutMs = *in.TimeoutMs
		if nv.TimeoutMs < catalog.MinTimeoutMs || nv.TimeoutMs > catalog.MaxTimeoutMs {
			v.Add("timeout_ms", fmt.Sprintf("must be between %d and %d", catalog.MinTimeoutMs, catalog.MaxTimeoutMs))
		}
	}
	if in.RateLimitPerSecond != nil {
		nv.RateLimitPerSecond = *in.RateLimitPerSecond
		if nv.RateLimitPerSecond < 0 || nv.RateLimitPerSecond > 1_000_000 {
			v.Add("rate_limit_per_second", "must be between 0 (the gateway's default) and 1000000")
		}
	}
	if len(in.Backend) == 0 || string(in.Backend) == "null" {
		v.Add("backend", "is required")
		return nv
	}
	nv.Backend.Type, nv.Backend.Spec = s.Backends.Prepare(ctx, v, json.RawMessage(in.Backend))
	return nv
}

type createFunctionRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	versionInput
}

type patchFunctionRequest struct {
	Description *string `json:"description"`
}

type publishRequest struct {
	Version *int `json:"version"`
}

// versionJSON is a version as the API shows it.
type versionJSON struct {
	Version            int                  `json:"version"`
	Backend            catalog.Backend      `json:"backend"`
	Pricing            catalog.PricingInput `json:"pricing"`
	TimeoutMs          int                  `json:"timeout_ms"`
	RateLimitPerSecond int                  `json:"rate_limit_per_second"`
	EverPublished      bool                 `json:"ever_published"`
	CreatedAt          string               `json:"created_at"`
}

type functionJSON struct {
	ID               string        `json:"id"`
	Vendor           string        `json:"vendor"`
	Name             string        `json:"name"`
	Description      string        `json:"description"`
	PublishedVersion *int          `json:"published_version"`
	Versions         []versionJSON `json:"versions"`
	CreatedAt        string        `json:"created_at"`
	UpdatedAt        string        `json:"updated_at"`
}

func toVersionJSON(v catalog.Version) versionJSON {
	return versionJSON{Version: v.Version, Backend: v.Backend, Pricing: v.Pricing.Input(), TimeoutMs: v.TimeoutMs,
		RateLimitPerSecond: v.RateLimitPerSecond, EverPublished: v.EverPublished, CreatedAt: rfc3339(v.CreatedAt)}
}

func toFunctionJSON(f catalog.Function) functionJSON {
	out := functionJSON{ID: f.ID, Vendor: f.VendorSlug, Name: f.Name, Description: f.Description, PublishedVersion: f.PublishedVersion,
		Versions: []versionJSON{}, CreatedAt: rfc3339(f.CreatedAt), UpdatedAt: rfc3339(f.UpdatedAt)}
	for _, v := range f.Versions {
		out.Versions = append(out.Versions, toVersionJSON(v))
	}
	return out
}

// vendor returns the caller's vendor, or a forbidden problem when the account
// has not become one.
func (s *Server) vendor(c echo.Context) (catalog.Vendor, error) {
	v, err := s.Catalog.VendorByAccount(c.Request().Context(), accountID(c))
	if fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND {
		return v, fnmarket.Errorf(fnmarket.EFORBIDDEN, "become a vendor first: POST /api/v1/vendor")
	}
	return v, err
}

func (s *Server) handleCreateFunction() echo.HandlerFunc {
	return func(c echo.Context) error {
		// Only a vendor may send a module; check before reading the body.
		ven, err := s.vendor(c)
		if err != nil {
			return err
		}
		var req createFunctionRequest
		if err := s.bindUpload(c, &req); err != nil {
			return err
		}
		v := fnmarket.Validation{}
		catalog.ValidateName(v, "name", req.Name, catalog.MinFunctionNameLen, catalog.MaxFunctionNameLen)
		validateDescription(v, req.Description)
		nv := s.parseVersion(c.Request().Context(), v, req.versionInput)
		if err := v.Err(); err != nil {
			return err
		}
		f, err := s.Catalog.CreateFunction(c.Request().Context(), ven, req.Name, req.Description, nv)
		if err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionFunctionCreate, f.ID, ven.Slug+"/"+f.Name)
		return c.JSON(http.StatusCreated, toFunctionJSON(f))
	}
}

func (s *Server) handleListFunctions() echo.HandlerFunc {
	return func(c echo.Context) error {
		ven, err := s.vendor(c)
		if err != nil {
			return err
		}
		fs, err := s.Catalog.Functions(c.Request().Context(), ven)
		if err != nil {
			return err
		}
		out := list[functionJSON]{Items: []functionJSON{}}
		for _, f := range fs {
			out.Items = append(out.Items, toFunctionJSON(f))
		}
		return c.JSON(http.StatusOK, out)
	}
}

// answerFunction runs op as the calling vendor and answers the function it
// returns.
func (s *Server) answerFunction(c echo.Context, op func(ctx context.Context, ven catalog.Vendor, id string) (catalog.Function, error)) error {
	ven, err := s.vendor(c)
	if err != nil {
		return err
	}
	f, err := op(c.Request().Context(), ven, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toFunctionJSON(f))
}

func (s *Server) handleGetFunction() echo.HandlerFunc {
	return func(c echo.Context) error { return s.answerFunction(c, s.Catalog.Function) }
}

func (s *Server) handlePatchFunction() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req patchFunctionRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		v := fnmarket.Validation{}
		if req.Description == nil {
			v.Add("description", "is required")
		} else {
			validateDescription(v, *req.Description)
		}
		if err := v.Err(); err != nil {
			return err
		}
		return s.answerFunction(c, func(ctx context.Context, ven catalog.Vendor, id string) (catalog.Function, error) {
			return s.Catalog.UpdateDescription(ctx, ven, id, *req.Description)
		})
	}
}

func (s *Server) handleAddVersion() echo.HandlerFunc {
	return func(c echo.Context) error {
		// Check the caller owns the function before reading the body (which
		// may carry a large module) and before the slow backend preparation.
		ven, err := s.vendor(c)
		if err != nil {
			return err
		}
		if _, err := s.Catalog.Function(c.Request().Context(), ven, c.Param("id")); err != nil {
			return err
		}
		var req versionInput
		if err := s.bindUpload(c, &req); err != nil {
			return err
		}
		v := fnmarket.Validation{}
		nv := s.parseVersion(c.Request().Context(), v, req)
		if err := v.Err(); err != nil {
			return err
		}
		ver, err := s.Catalog.AddVersion(c.Request().Context(), ven, c.Param("id"), nv)
		if err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionFunctionVersion, c.Param("id"), fmt.Sprintf("version %d", ver.Version))
		return c.JSON(http.StatusCreated, toVersionJSON(ver))
	}
}

func (s *Server) handlePublish() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req publishRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		if req.Version == nil || *req.Version < 1 {
			return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "name the version to publish", Fields: map[string]string{"version": "must be a version number, 1 or more"}}
		}
		return s.answerFunction(c, func(ctx context.Context, ven catalog.Vendor, id string) (catalog.Function, error) {
			f, err := s.Catalog.Publish(ctx, ven, id, *req.Version)
			if err == nil {
				s.audit(c, accountID(c), audit.ActionFunctionPublish, id, fmt.Sprintf("version %d", *req.Version))
			}
			return f, err
		})
	}
}

func (s *Server) handleUnpublish() echo.HandlerFunc {
	return func(c echo.Context) error {
		return s.answerFunction(c, func(ctx context.Context, ven catalog.Vendor, id string) (catalog.Function, error) {
			f, err := s.Catalog.Unpublish(ctx, ven, id)
			if err == nil {
				s.audit(c, accountID(c), audit.ActionFunctionUnpublish, id, "")
			}
			return f, err
		})
	}
}

// listingJSON is a published function in the public catalog.
type listingJSON struct {
	Vendor           string               `json:"vendor"`
	VendorName       string               `json:"vendor_name"`
	Name             string               `json:"name"`
	Description      string               `json:"description"`
	Pricing          catalog.PricingInput `json:"pricing"`
	PublishedVersion int                  `json:"published_version"`
	TimeoutMs        int                  `json:"timeout_ms"`
	InvokeURL        string               `json:"invoke_url"`
	Curl             string               `json:"curl,omitempty"`
}

func (s *Server) toListingJSON(l catalog.Listing, detail bool) listingJSON {
	out := listingJSON{Vendor: l.VendorSlug, VendorName: l.VendorName, Name: l.Name, Description: l.Description,
		Pricing: l.Published.Pricing.Input(), PublishedVersion: l.Published.Version, TimeoutMs: l.Published.TimeoutMs,
		InvokeURL: strings.TrimRight(s.GatewayURL, "/") + "/v1/invoke/" + l.VendorSlug + "/" + l.Name}
	if detail {
		out.Curl = fmt.Sprintf("curl -X POST %s \\\n  -H 'Authorization: Bearer $FNMARKET_API_KEY' \\\n  -H 'Content-Type: application/json' \\\n  -d '{}'", out.InvokeURL)
	}
	return out
}

func (s *Server) handleCatalogSearch() echo.HandlerFunc {
	return func(c echo.Context) error {
		q := strings.TrimSpace(c.QueryParam("q"))
		limit := 50
		if ls := c.QueryParam("limit"); ls != "" {
			n, err := strconv.Atoi(ls)
			if err != nil || n < 1 || n > 100 {
				return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "bad limit", Fields: map[string]string{"limit": "must be between 1 and 100"}}
			}
			limit = n
		}
		if len(q) > 200 {
			return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "query too long", Fields: map[string]string{"q": "must be at most 200 characters"}}
		}
		ls, err := s.Catalog.Search(c.Request().Context(), q, c.QueryParam("cursor"), limit+1)
		if err != nil {
			return err
		}
		out := list[listingJSON]{Items: []listingJSON{}}
		for i, l := range ls {
			if i == limit {
				out.NextCursor = ls[i-1].VendorSlug + "/" + ls[i-1].Name
				break
			}
			out.Items = append(out.Items, s.toListingJSON(l, false))
		}
		return c.JSON(http.StatusOK, out)
	}
}

func (s *Server) handleCatalogListing() echo.HandlerFunc {
	return func(c echo.Context) error {
		l, err := s.Catalog.Listing(c.Request().Context(), c.Param("vendor"), c.Param("name"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, s.toListingJSON(l, true))
	}
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func rfc3339Ptr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := rfc3339(*t)
	return &s
}

func itoa(n int) string { return strconv.Itoa(n) }

// FunctionLogLine is one line of a wasm function's log.
type FunctionLogLine struct {
	Time         time.Time `json:"time"`
	InvocationID string    `json:"invocation_id"`
	Source       string    `json:"source"`
	Text         string    `json:"text"`
}

// FunctionLogReader reads the recent log of a function version.
type FunctionLogReader interface {
	Lines(ctx context.Context, functionID string, version int) ([]FunctionLogLine, error)
}

func (s *Server) handleFunctionLogs() echo.HandlerFunc {
	return func(c echo.Context) error {
		ven, err := s.vendor(c)
		if err != nil {
			return err
		}
		f, err := s.Catalog.Function(c.Request().Context(), ven, c.Param("id"))
		if err != nil {
			return err
		}
		version := 0
		if f.PublishedVersion != nil {
			version = *f.PublishedVersion
		}
		if v := c.QueryParam("version"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "bad version", Fields: map[string]string{"version": "must be a version number"}}
			}
			version = n
		}
		if version == 0 && len(f.Versions) > 0 {
			version = f.Versions[len(f.Versions)-1].Version
		}
		lines, err := s.FunctionLogs.Lines(c.Request().Context(), f.ID, version)
		if err != nil {
			return err
		}
		if lines == nil {
			lines = []FunctionLogLine{}
		}
		return c.JSON(http.StatusOK, list[FunctionLogLine]{Items: lines})
	}
}
