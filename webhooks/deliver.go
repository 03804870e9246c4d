package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/migrations"
)

// Backoff is the wait after each failed attempt: a delivery is tried
// len(Backoff)+1 times over about 27.6 hours, then fails.
var Backoff = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// DisableAfter is how long every attempt to an endpoint may fail (no success
// in between) before the endpoint is disabled.
const DisableAfter = 5 * 24 * time.Hour

// DeliverConfig tunes a Deliverer. Zero values take the defaults.
type DeliverConfig struct {
	DB     *database.DB
	Clock  fnmarket.Clock
	Logger *slog.Logger
	// AllowPrivate lets deliveries dial loopback and private addresses
	// (FNMARKET_ALLOW_PRIVATE_UPSTREAMS); otherwise the gateway's dial guard
	// refuses them on every connection.
	AllowPrivate bool
	// Timeout bounds one attempt, connection to answer (5 s).
	Timeout time.Duration
	// Batch is how many due deliveries one pass claims (100).
	Batch int
	// Concurrency is how many deliveries one worker sends at once (16).
	Concurrency int
	// Transport replaces the guarded transport (tests of the guard leave it nil).
	Transport http.RoundTripper
}

// Deliverer turns outbox events into deliveries and sends the deliveries
// that are due. Several may share one PostgreSQL database: events and
// deliveries are claimed with FOR UPDATE SKIP LOCKED, and a claimed
// delivery is leased (next_attempt_at pushed past its send) so no other
// worker sends it meanwhile; on SQLite, one process at a time.
type Deliverer struct {
	cfg    DeliverConfig
	client *http.Client

	attempts, delivered, gaveUp, disabled atomic.Int64
}

// Counts are a deliverer's totals since it started, for metrics.
type Counts struct {
	Attempts  int64 // attempts made
	Delivered int64 // attempts answered 2xx
	GaveUp    int64 // deliveries failed for good after their last attempt
	Disabled  int64 // endpoints this deliverer disabled
}

// Counts returns the deliverer's totals.
func (d *Deliverer) Counts() Counts {
	return Counts{Attempts: d.attempts.Load(), Delivered: d.delivered.Load(), GaveUp: d.gaveUp.Load(), Disabled: d.disabled.Load()}
}

// NewDeliverer returns a deliverer.
func NewDeliverer(cfg DeliverConfig) *Deliverer {
	if cfg.Clock == nil {
		cfg.Clock = fnmarket.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	rt := cfg.Transport
	if rt == nil {
		dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
		if !cfg.AllowPrivate {
			dialer.Control = gateway.DialGuard
		}
		rt = &http.Transport{
			Proxy:                 nil, // never from the environment
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout,
		}
	}
	return &Deliverer{cfg: cfg, client: &http.Client{
		Transport: rt,
		Timeout:   cfg.Timeout,
		// A redirect is not followed: the 3xx is the answer, a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// PassStats counts what one pass did.
type PassStats struct {
	Events    int // events fanned out
	Sent      int // attempts made
	Delivered int // attempts answered 2xx
}

// RunOnce fans out new events, then sends the deliveries due now, and
// returns when every attempt it started has been recorded.
func (d *Deliverer) RunOnce(ctx context.Context) (PassStats, error) {
	var st PassStats
	n, err := d.FanOut(ctx)
	st.Events = n
	if err != nil {
		return st, err
	}
	sent, ok, err := d.SendDue(ctx)
	st.Sent, st.Delivered = sent, ok
	return st, err
}

// Run repeats RunOnce every interval (and at once while a pass was full)
// until ctx ends; a pass in progress finishes its attempts first.
func (d *Deliverer) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := d.RunOnce(context.WithoutCancel(ctx))
		if err != nil {
			d.cfg.Logger.Warn("webhook pass failed; it will be retried", "err", err)
		}
		if err == nil && (st.Events >= d.cfg.Batch || st.Sent >= d.cfg.Batch) && ctx.Err() == nil {
			continue // more is waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Deliverer) skipLocked() string {
	if d.cfg.DB.Dialect == migrations.Postgres {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// FanOut turns up to Batch new events into one pending delivery per
// subscribed, enabled endpoint of the event's account, and marks them
// fanned out, in one transaction. It returns how many events it took.
func (d *Deliverer) FanOut(ctx context.Context) (int, error) {
	now := d.cfg.Clock.Now().UTC()
	var n int
	err := d.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var evs []eventRow
		if err := tx.Raw("SELECT id, account_id, type FROM webhook_events WHERE fanned_out_at IS NULL ORDER BY created_at, id LIMIT ?"+d.skipLocked(),
			d.cfg.Batch).Scan(&evs).Error; err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		n = len(evs)
		endpoints := map[string][]endpointRow{}
		var rows []deliveryRow
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = ev.ID
			eps, ok := endpoints[ev.AccountID]
			if !ok {
				if err := tx.Where("account_id = ? AND deleted_at IS NULL AND disabled_at IS NULL", ev.AccountID).Find(&eps).Error; err != nil {
					return err
				}
				endpoints[ev.AccountID] = eps
			}
			for _, ep := range eps {
				if ep.subscribes(ev.Type) {
					rows = append(rows, deliveryRow{ID: fnmarket.NewID("whd"), EndpointID: ep.ID, EventID: ev.ID,
						Status: StatusPending, NextAttemptAt: &now, CreatedAt: now})
				}
			}
		}
		if len(rows) > 0 {
			if err := tx.Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(rows, 200).Error; err != nil {
				return err
			}
		}
		return tx.Model(&eventRow{}).Where("id IN ?", ids).Update("fanned_out_at", now).Error
	})
	if err != nil {
		return 0, fmt.Errorf("webhook fan-out: %w", err)
	}
	return n, nil
}

// attempt is one claimed delivery with what sending it takes.
type attempt struct {
	ID, EndpointID, EventID, Payload, URL, Secret string
	Attempts                                      int
}

// claim takes up to Batch due deliveries, leased to this pass until well
// after their sends end, and returns them with their event and endpoint.
func (d *Deliverer) claim(ctx context.Context, token string, now time.Time) ([]attempt, error) {
	lease := now.Add(2*d.cfg.Timeout + 30*time.Second)
	var out []attempt
	err := d.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var ids []string
		if err := tx.Raw("SELECT id FROM webhook_deliveries WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"+d.skipLocked(),
			StatusPending, now, d.cfg.Batch).Scan(&ids).Error; err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		// The lease. SKIP LOCKED already kept other workers off these rows;
		// the status and time are checked again all the same.
		if err := tx.Model(&deliveryRow{}).Where("id IN ? AND status = ? AND next_attempt_at <= ?", ids, StatusPending, now).
			Updates(map[string]any{"next_attempt_at": lease, "claim": token}).Error; err != nil {
			return err
		}
		if err := tx.Table("webhook_deliveries d").
			Select("d.id, d.endpoint_id, d.event_id, d.attempts, e.payload, p.url, p.secret").
			Joins("JOIN webhook_events e ON e.id = d.event_id").
			Joins("JOIN webhook_endpoints p ON p.id = d.endpoint_id").
			Where("d.id IN ? AND d.claim = ? AND p.deleted_at IS NULL AND p.disabled_at IS NULL", ids, token).Scan(&out).Error; err != nil {
			return err
		}
		if len(out) == len(ids) {
			return nil
		}
		// Deliveries of an endpoint deleted or disabled since they were due.
		live := map[string]bool{}
		for _, a := range out {
			live[a.ID] = true
		}
		var gone []string
		for _, id := range ids {
			if !live[id] {
				gone = append(gone, id)
			}
		}
		return tx.Model(&deliveryRow{}).Where("id IN ? AND claim = ?", gone, token).
			Updates(map[string]any{"status": StatusFailed, "last_error": "the endpoint was deleted or disabled", "next_attempt_at": nil, "claim": nil}).Error
	})
	return out, err
}

// SendDue sends the deliveries due now, Concurrency at a time, and records
// each outcome. It returns the attempts made and how many were answered 2xx.
func (d *Deliverer) SendDue(ctx context.Context) (sent, delivered int, err error) {
	token := fnmarket.NewID("claim")
	as, err := d.claim(ctx, token, d.cfg.Clock.Now().UTC())
	if err != nil {
		return 0, 0, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, a := range as {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res := d.send(ctx, a)
			err := d.record(ctx, a, token, res)
			d.attempts.Add(1)
			mu.Lock()
			defer mu.Unlock()
			sent++
			if res.ok() {
				d.delivered.Add(1)
				delivered++
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	return sent, delivered, firstErr
}

// result is how one attempt went.
type result struct {
	code int    // HTTP status, 0 when none came
	err  string // why there was no answer, or ""
	at   time.Time
}

func (r result) ok() bool { return r.code >= 200 && r.code < 300 }

// send makes one attempt: the event's payload, signed at the attempt's time.
func (d *Deliverer) send(ctx context.Context, a attempt) result {
	now := d.cfg.Clock.Now().UTC()
	res := result{at: now}
	sig, err := Sign(a.Secret, a.EventID, now, []byte(a.Payload))
	if err != nil {
		res.err = "signing failed: " + err.Error()
		return res
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader([]byte(a.Payload)))
	if err != nil {
		res.err = "bad URL"
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "fnmarket-webhooks/1")
	req.Header.Set(HeaderID, a.EventID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := d.client.Do(req)
	if err != nil {
		var ne net.Error
		switch {
		case gateway.IsBlockedDial(err):
			res.err = "refused: the URL resolves to a loopback, private, link-local or reserved address"
		case errors.As(err, &ne) && ne.Timeout():
			res.err = fmt.Sprintf("no answer within %s", d.cfg.Timeout)
		default:
			res.err = "could not connect"
		}
		return res
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	res.code = resp.StatusCode
	if !res.ok() {
		res.err = "answered " + strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	}
	return res
}

// record writes an attempt's outcome if this pass still holds the delivery,
// schedules the next attempt (Backoff) or fails it, and keeps the
// endpoint's failing streak, disabling it after DisableAfter of failures.
func (d *Deliverer) record(ctx context.Context, a attempt, token string, res result) error {
	attempts := a.Attempts + 1
	upd := map[string]any{"attempts": attempts, "claim": nil}
	if res.code != 0 {
		upd["last_status_code"] = res.code
	} else {
		upd["last_status_code"] = nil
	}
	switch {
	case res.ok():
		upd["status"], upd["next_attempt_at"], upd["delivered_at"], upd["last_error"] = StatusDelivered, nil, res.at, nil
	case attempts-1 < len(Backoff):
		upd["status"], upd["next_attempt_at"], upd["last_error"] = StatusPending, res.at.Add(Backoff[attempts-1]), res.err
	default:
		upd["status"], upd["next_attempt_at"], upd["last_error"] = StatusFailed, nil, res.err
		defer d.gaveUp.Add(1)
	}
	// Locks are taken endpoint first, then deliveries (as DeleteEndpoint
	// does), so a disabling that fails the endpoint's pending deliveries
	// cannot deadlock with another attempt's record.
	err := d.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if res.ok() {
			// Locks the endpoint only when it was failing.
			if err := tx.Model(&endpointRow{}).Where("id = ? AND failing_since IS NOT NULL", a.EndpointID).Update("failing_since", nil).Error; err != nil {
				return err
			}
			return tx.Model(&deliveryRow{}).Where("id = ? AND claim = ?", a.ID, token).Updates(upd).Error
		}
		if d.cfg.DB.Dialect == migrations.Postgres {
			if err := tx.Exec("SELECT id FROM webhook_endpoints WHERE id = ? FOR UPDATE", a.EndpointID).Error; err != nil {
				return err
			}
		}
		r := tx.Model(&deliveryRow{}).Where("id = ? AND claim = ?", a.ID, token).Updates(upd)
		if r.Error != nil || r.RowsAffected == 0 {
			return r.Error // re-armed or taken over meanwhile: that one counts
		}
		if err := tx.Model(&endpointRow{}).Where("id = ? AND failing_since IS NULL", a.EndpointID).Update("failing_since", res.at).Error; err != nil {
			return err
		}
		var ep endpointRow
		if err := tx.Where("id = ?", a.EndpointID).Take(&ep).Error; err != nil {
			return err
		}
		if ep.DisabledAt != nil || ep.FailingSince == nil || res.at.Sub(*ep.FailingSince) < DisableAfter {
			return nil
		}
		why := fmt.Sprintf("every delivery attempt failed for %d days, since %s (last: %s)",
			int(DisableAfter/(24*time.Hour)), ep.FailingSince.UTC().Format(time.RFC3339), res.err)
		if err := tx.Model(&endpointRow{}).Where("id = ?", ep.ID).Updates(map[string]any{"disabled_at": res.at, "disabled_reason": why}).Error; err != nil {
			return err
		}
		d.disabled.Add(1)
		d.cfg.Logger.Info("webhook endpoint disabled", "endpoint", ep.ID, "account", ep.AccountID, "reason", why)
		return failPending(tx, ep.ID, "the endpoint was disabled")
	})
	if err != nil {
		return fmt.Errorf("record webhook delivery %s: %w", a.ID, err)
	}
	return nil
}
