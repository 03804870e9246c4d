package metering

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/fnmarket/fnmarket"
)

// MeterConfig configures a Meter.
type MeterConfig struct {
	// Redis holds the counters.
	Redis redis.UniversalClient
	// Prefix is put before every Redis key.
	Prefix string
	// SpoolDir is where calls are logged before they reach Redis; one meter
	// per directory (it is locked).
	SpoolDir string
	// FlushInterval is how often counters go to Redis; default 200ms.
	FlushInterval time.Duration
	// MaxBackoff bounds the wait between retries while Redis fails; default 5s.
	MaxBackoff time.Duration
	// SendTimeout bounds one flush round trip; default 5s.
	SendTimeout time.Duration
	// AppliedTTL is how long Redis remembers a flush id; default 7 days.
	AppliedTTL time.Duration
	// CounterTTL is how long month counters (spend settled late) live after
	// their last increment; default 62 days.
	CounterTTL time.Duration
	// CompactBytes: once everything is acknowledged and the spool segment is
	// larger than this, it is replaced by an empty one; default 16 MiB.
	CompactBytes int64
	// RotateBytes: a segment larger than this is rotated even while flushes
	// are outstanding, carrying them over; default 64 MiB. Flushes awaiting
	// confirmation (see Confirmed) are kept up to RotateBytes/2 of intents;
	// beyond that the oldest are forgotten as if Confirmed were nil.
	RotateBytes int64
	// Confirmed, when set, reports which flush ids the database holds
	// (Store.FlushesCommitted). The spool then keeps every flush Redis
	// acknowledged until the database has it, so calls survive Redis losing
	// its data: flushes not in the database are sent again with their ids
	// when the spool is replayed, and, while running, when Redis is found to
	// have lost their applied markers. Nil keeps a flush only until Redis
	// acknowledges it.
	Confirmed func(ctx context.Context, flushIDs []string) (map[string]bool, error)
	// ConfirmInterval is how often acknowledged flushes are looked up with
	// Confirmed, off the hot path; default 2s.
	ConfirmInterval time.Duration
	// RedisLossGrace: an acknowledged flush still not in the database this
	// long after its ack has its applied marker looked up in Redis; if Redis
	// no longer has it and, RedisLossGrace later, the database still does not
	// have the flush either, it is sent again. It must exceed the longest a
	// roll-up transaction takes (one that read the batch before Redis lost
	// it may still commit); default 30s.
	RedisLossGrace time.Duration
	// Clock stamps acks and decides RedisLossGrace and the retry backoff;
	// default fnmarket.SystemClock. The loops still wake on real tickers.
	Clock fnmarket.Clock
	// Logger receives flush failures; default slog.Default().
	Logger *slog.Logger
}

func (c *MeterConfig) withDefaults() {
	if c.FlushInterval <= 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 5 * time.Second
	}
	if c.AppliedTTL <= 0 {
		c.AppliedTTL = 7 * 24 * time.Hour
	}
	if c.CounterTTL <= 0 {
		c.CounterTTL = 62 * 24 * time.Hour
	}
	if c.CompactBytes <= 0 {
		// Compaction writes and fsyncs a new segment while Record waits: keep
		// it rare (about every 15 s at 10k calls/s).
		c.CompactBytes = 16 << 20
	}
	if c.RotateBytes <= 0 {
		c.RotateBytes = 64 << 20
	}
	if c.ConfirmInterval <= 0 {
		c.ConfirmInterval = 2 * time.Second
	}
	if c.RedisLossGrace <= 0 {
		c.RedisLossGrace = 30 * time.Second
	}
	if c.Clock == nil {
		c.Clock = fnmarket.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// meterHooks are test seams that make a flush stop at a given step, as a
// crash would.
type meterHooks struct {
	beforeSend func(f *flush) error
	afterSend  func(f *flush) error
}

// Meter counts finished calls: each call is appended to a local spool, summed
// in memory and flushed to Redis per shard every FlushInterval, idempotently.
// The spool keeps the log on disk; the confirmer keeps acknowledged flushes
// until the database has them.
type Meter struct {
	cfg    MeterConfig
	sender flushSender
	log    *slog.Logger
	clock  fnmarket.Clock

	flushMu sync.Mutex // one flush (or rotation) at a time
	// wmu orders writes to the spool: a group of call lines is written while
	// holding it, and flush intents and rotations take it first, so a call's
	// line never lands after an intent that already counts the call. Lock
	// order: flushMu, then wmu, then mu.
	wmu sync.Mutex

	// mu guards everything below, the spool's fields and the confirmer's.
	mu           sync.Mutex
	spool        *spool
	conf         *confirmer
	shards       [NumShards]*aggregate // calls not yet in any flush
	unacked      []*flush              // flushes Redis has not acknowledged, oldest first
	unackedShard [NumShards]int
	inFlight     inFlight // recorded, not yet acknowledged by Redis
	closed       bool

	// The flush loop's retry state, touched only by flushTick.
	backoff time.Duration
	retryAt time.Time

	stop        chan struct{}
	done        chan struct{}
	confirmDone chan struct{}
	stopOnce    sync.Once
	hooks       meterHooks
}

// NewMeter opens the spool in cfg.SpoolDir, replays what an earlier process
// left there (unacknowledged flushes are resent with their ids, calls not yet
// in any flush are flushed anew) and starts flushing in the background.
func NewMeter(cfg MeterConfig) (*Meter, error) {
	m, err := newMeter(cfg)
	if err != nil {
		return nil, err
	}
	go m.loop()
	if m.cfg.Confirmed != nil {
		go m.confirmLoop()
	} else {
		close(m.confirmDone)
	}
	return m, nil
}

// newMeter opens and replays the spool without starting the loops; tests
// that step them (flushTick, confirmer.tick) close done and confirmDone.
func newMeter(cfg MeterConfig) (*Meter, error) {
	cfg.withDefaults()
	if cfg.Redis == nil {
		return nil, errors.New("new meter: no redis client")
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("new meter: no spool directory")
	}
	sp, st, found, err := openSpool(cfg.SpoolDir, cfg.Confirmed != nil, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("new meter: %w", err)
	}
	m := &Meter{
		cfg: cfg,
		sender: flushSender{rdb: cfg.Redis, ks: keyspace{prefix: cfg.Prefix}, timeout: cfg.SendTimeout,
			appliedTTL: cfg.AppliedTTL, counterTTL: cfg.CounterTTL, recordID: cfg.Confirmed != nil},
		log:         cfg.Logger,
		clock:       cfg.Clock,
		spool:       sp,
		inFlight:    newInFlight(),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		confirmDone: make(chan struct{}),
	}
	m.conf = newConfirmer(confirmerConfig{
		mu:         &m.mu,
		confirmed:  cfg.Confirmed,
		markers:    m.sender.markersPresent,
		settled:    func(ids []string) { m.spool.note(spoolRecord{T: recConfirm, IDs: ids}) },
		lost:       m.requeueLocked,
		closed:     func() bool { return m.closed },
		clock:      cfg.Clock,
		grace:      cfg.RedisLossGrace,
		appliedTTL: cfg.AppliedTTL,
		maxBytes:   cfg.RotateBytes / 2,
		log:        cfg.Logger,
	})
	for i := range m.shards {
		m.shards[i] = newAggregate()
	}
	if err := m.recover(st, found); err != nil {
		sp.close()
		return nil, fmt.Errorf("new meter: %w", err)
	}
	return m, nil
}

// recover takes in the state replayed from the spool and starts a fresh
// segment holding it.
func (m *Meter) recover(st spoolState, found bool) error {
	if found && m.cfg.Confirmed != nil && len(st.acked) > 0 {
		m.conf.sortReplayed(&st, m.cfg.SendTimeout)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if found {
		for _, f := range st.unacked {
			if f.size == 0 {
				f.size = intentSize(f)
			}
			m.addUnackedLocked(f)
			m.inFlight.add(f.agg)
		}
		for _, f := range st.acked {
			m.conf.addLocked(f)
		}
		for i, a := range st.carried {
			m.shards[i].merge(a)
			m.inFlight.add(a)
		}
		if m.inFlight.calls > 0 {
			m.log.Info("metering spool: replaying calls left by an earlier run", "calls", m.inFlight.calls, "unacknowledged_flushes", len(st.unacked))
		}
	}
	return m.rotateLocked()
}

// rotateLocked starts a new spool segment holding the current state: flushes
// awaiting the database, flushes not acknowledged, calls not yet in a flush.
func (m *Meter) rotateLocked() error {
	return m.spool.rotate(spoolSnapshot{acked: m.conf.flushes, unacked: m.unacked, carried: &m.shards})
}

func (m *Meter) addUnackedLocked(f *flush) {
	m.unacked = append(m.unacked, f)
	m.unackedShard[f.shard]++
}

// requeueLocked takes back flushes Redis lost before they reached the
// database, to be sent again.
func (m *Meter) requeueLocked(fs []*flush) {
	for _, f := range fs {
		m.addUnackedLocked(f)
		m.inFlight.add(f.agg)
	}
}

// Record counts one finished call. It returns only once the call's line is
// in the spool, written with write(2) (so a killed process loses nothing it
// recorded), and never waits on Redis. Calls finishing together share one
// write (group commit): each waits at most for the write in progress. A
// spool write error is logged; the call is still counted in memory.
func (m *Meter) Record(c Call) {
	c.At = c.At.UTC()
	sc := spooledOf(c)
	line := sc.appendSpoolLine(make([]byte, 0, 256))
	shard := shardOf(c.ConsumerID)

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.log.Error("metering: call recorded after Close is lost", "invocation_id", c.InvocationID)
		return
	}
	mine := m.spool.queue(line)
	// Summed straight into the shard's aggregate, which keeps its rows'
	// field names: no string is built for a row it has already seen.
	m.shards[shard].addSpooled(sc)
	m.inFlight.calls++
	m.mu.Unlock()

	// Group commit: whoever holds wmu writes every line waiting so far in
	// one write(2); the others find their line already written.
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.Lock()
	if m.spool.written(mine) || m.closed {
		m.mu.Unlock()
		return
	}
	buf, upto, file := m.spool.takeQueued()
	m.mu.Unlock()
	n, err := file.Write(buf)
	m.mu.Lock()
	m.spool.wroteQueued(buf, upto, n)
	m.mu.Unlock()
	if err != nil {
		m.log.Error("metering: append calls to spool", "calls", strconv.Itoa(bytes.Count(buf, []byte{'\n'})), "err", err)
	}
}

// Backlog is how many recorded calls Redis has not yet confirmed.
func (m *Meter) Backlog() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inFlight.calls
}

// Unconfirmed is how many calls Redis acknowledged that are not yet known to
// be in the database (always 0 without MeterConfig.Confirmed); the spool
// keeps them until they are.
func (m *Meter) Unconfirmed() int64 { return m.conf.unconfirmedCalls() }

func (m *Meter) loop() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.flushTick()
	}
}

// flushTick is one pass of the flush loop: a flush, unless a failed one
// asked to wait; failures back off, doubling from FlushInterval up to
// MaxBackoff, by the Meter's clock.
func (m *Meter) flushTick() {
	if m.clock.Now().Before(m.retryAt) {
		return
	}
	if err := m.flushOnce(context.Background()); err != nil {
		m.backoff = min(max(2*m.backoff, m.cfg.FlushInterval), m.cfg.MaxBackoff)
		m.retryAt = m.clock.Now().Add(m.backoff)
		m.log.Warn("metering: flush to redis failed; will retry", "err", err, "retry_in", m.backoff, "backlog", m.Backlog())
		return
	}
	m.backoff = 0
}

// flushOnce cuts a flush for every shard with new calls (unless that shard
// still has one outstanding), logs the intents, syncs the spool, and sends
// every outstanding flush to Redis, oldest first.
func (m *Meter) flushOnce(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()

	m.wmu.Lock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.wmu.Unlock()
		return errors.New("flush: meter is closed")
	}
	// The calls an intent counts must be on disk before it.
	werr := m.spool.writeQueued()
	for s, a := range m.shards {
		if werr != nil {
			break
		}
		if a.empty() || m.unackedShard[s] > 0 {
			continue
		}
		f := &flush{id: uuid.NewString(), shard: s, agg: a}
		if err := m.spool.appendRecord(spoolRecord{T: recFlush, ID: f.id, Shard: s, Agg: a}); err != nil {
			// Without the intent on disk the calls stay where they are; they
			// go out in a later flush.
			werr = fmt.Errorf("log flush intent: %w", err)
			break
		}
		m.shards[s] = newAggregate()
		m.addUnackedLocked(f)
	}
	if werr == nil && m.spool.size > m.cfg.RotateBytes {
		werr = m.rotateLocked()
	}
	file := m.spool.file
	outstanding := append([]*flush(nil), m.unacked...)
	m.mu.Unlock()
	m.wmu.Unlock()
	if werr != nil {
		return fmt.Errorf("flush: %w", werr)
	}
	if len(outstanding) == 0 {
		return m.maybeCompact()
	}
	// Intents are durable before Redis sees them, so an applied flush is
	// always one the spool knows by id.
	if err := file.Sync(); err != nil {
		return fmt.Errorf("flush: sync spool: %w", err)
	}
	for _, f := range outstanding {
		if h := m.hooks.beforeSend; h != nil {
			if err := h(f); err != nil {
				return err
			}
		}
		if err := m.sender.send(ctx, f); err != nil {
			return fmt.Errorf("flush %s of shard %d: %w", f.id, f.shard, err)
		}
		if h := m.hooks.afterSend; h != nil {
			if err := h(f); err != nil {
				return err
			}
		}
		m.ack(f)
	}
	return m.maybeCompact()
}

// maybeCompact replaces a segment past CompactBytes by a fresh one when what
// it would carry over is small: nothing unacknowledged, no calls outside a
// flush, and few flushes awaiting confirmation. Callers hold flushMu.
func (m *Meter) maybeCompact() error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || len(m.unacked) > 0 || m.spool.grown() <= m.cfg.CompactBytes || m.conf.bytes > m.cfg.CompactBytes/4 || !m.allEmptyLocked() {
		return nil
	}
	if err := m.rotateLocked(); err != nil {
		return fmt.Errorf("flush: compact spool: %w", err)
	}
	return nil
}

func (m *Meter) allEmptyLocked() bool {
	for _, a := range m.shards {
		if !a.empty() {
			return false
		}
	}
	return true
}

// ack records that Redis holds f. A lost ack only means f is sent again,
// which its applied marker turns into a no-op. With Confirmed, f is kept
// until the database has it.
func (m *Meter) ack(f *flush) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.spool.appendRecord(spoolRecord{T: recAck, ID: f.id, At: now.UnixMilli()}); err != nil {
		m.log.Warn("metering: log flush ack", "flush_id", f.id, "err", err)
	}
	for i, u := range m.unacked {
		if u == f {
			m.unacked = append(m.unacked[:i], m.unacked[i+1:]...)
			break
		}
	}
	m.unackedShard[f.shard]--
	m.inFlight.remove(f.agg)
	if m.cfg.Confirmed != nil {
		f.ackedAt, f.checkedAt, f.missingSince = now, time.Time{}, time.Time{}
		m.conf.addLocked(f)
	}
}

func (m *Meter) confirmLoop() {
	defer close(m.confirmDone)
	t := time.NewTicker(m.cfg.ConfirmInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.conf.tick(m.cfg.SendTimeout)
	}
}

// Close stops the background flushing and flushes everything recorded,
// retrying until ctx ends. What is still undelivered then stays in the
// spool and is sent by the next meter opened on the same directory.
func (m *Meter) Close(ctx context.Context) error {
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.done
	<-m.confirmDone
	var lastErr error
	wait := 50 * time.Millisecond
	for m.Backlog() > 0 {
		if lastErr = m.flushOnce(ctx); lastErr == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			wait = min(2*wait, time.Second)
			continue
		}
		break
	}
	if m.cfg.Confirmed != nil {
		if err := m.conf.confirmOnce(ctx, false); err != nil {
			m.log.Warn("metering: confirming flushes at close failed; the spool keeps them", "err", err, "unconfirmed_calls", m.Unconfirmed())
		}
	}
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	err := m.spool.writeQueued()
	if m.inFlight.calls == 0 && m.spool.grown() > 0 {
		err = errors.Join(err, m.rotateLocked())
	}
	m.closed = true
	err = errors.Join(err, m.spool.close())
	if m.inFlight.calls > 0 {
		return fmt.Errorf("close meter: %d calls not yet in redis are kept in spool %s: %w", m.inFlight.calls, m.spool.dir, errors.Join(lastErr, ctx.Err()))
	}
	if err != nil {
		return fmt.Errorf("close meter: %w", err)
	}
	return nil
}

// abandon stops the meter as kill -9 would: no flush, files just closed.
func (m *Meter) abandon() {
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.done
	<-m.confirmDone
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.spool.close()
}
