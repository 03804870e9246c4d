package metering

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spool record types. A segment starts with a snapshot (header, the flushes
// not yet settled, the calls carried over not yet in any flush, and a
// snapshot-complete marker); after it come calls, flush intents, acks and
// confirmations in the order they happened.
const (
	recHeader   = "h" // segment header
	recCarry    = "g" // calls carried from an older segment, summed, not yet in any flush
	recSnapshot = "s" // the snapshot part of the segment is complete and synced
	recCall     = "c" // one recorded call
	recFlush    = "f" // flush intent: id, shard and exactly what it adds to Redis
	recAck      = "a" // Redis confirmed the flush with this id
	recConfirm  = "k" // the database holds these flushes (or the spool gave up on them)
)

// spoolTracked is the header version of a segment written by a Meter that
// keeps acknowledged flushes until the database confirms them: in it an ack
// leaves the flush pending until a confirm record. In older segments an ack
// settles the flush.
const spoolTracked = 2

// spoolRecord is one line of a spool segment.
type spoolRecord struct {
	T     string       `json:"t"`
	V     int          `json:"v,omitempty"` // header: spoolTracked or 0
	Call  *spooledCall `json:"call,omitempty"`
	ID    string       `json:"id,omitempty"`
	IDs   []string     `json:"ids,omitempty"` // confirm
	At    int64        `json:"at,omitempty"`  // ack: Unix milliseconds
	Shard int          `json:"shard,omitempty"`
	Agg   *aggregate   `json:"agg,omitempty"`
}

func encodeRecord(r spoolRecord) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode spool record %s: %w", r.T, err)
	}
	return append(b, '\n'), nil
}

// flush is one batch of a shard's counters on its way to Redis; its id makes
// sending it again harmless.
type flush struct {
	id    string
	shard int
	agg   *aggregate
	size  int64 // bytes of its intent record, to bound the spool

	// Acknowledged, not yet confirmed in the database (MeterConfig.Confirmed);
	// guarded by Meter.mu.
	ackedAt      time.Time
	checkedAt    time.Time // applied marker last looked for in Redis
	missingSince time.Time // applied marker found missing from Redis
}

// spoolState is what replaying a segment recovers.
type spoolState struct {
	unacked []*flush
	// acked were acknowledged by Redis but not confirmed in the database;
	// only a tracked segment has them.
	acked   []*flush
	carried [NumShards]*aggregate
	tracked bool
}

// Flush states while replaying.
const (
	flushUnacked = iota
	flushAcked
	flushSettled
)

// replay is the state of one segment being read.
type replay struct {
	st       spoolState
	complete bool
	order    []*flush
	state    map[string]int
	byID     map[string]*flush
}

const segmentPrefix, segmentSuffix = "spool-", ".log"

func segmentName(seq int64) string {
	return fmt.Sprintf("%s%016d%s", segmentPrefix, seq, segmentSuffix)
}

// listSegments returns the spool segments in dir, oldest first.
func listSegments(dir string) ([]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list spool %s: %w", dir, err)
	}
	var seqs []int64
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, segmentPrefix) || !strings.HasSuffix(n, segmentSuffix) {
			continue
		}
		seq, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(n, segmentPrefix), segmentSuffix), 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// replaySegment reads one segment. complete is false when the segment has no
// snapshot marker: it was cut short while being created and the segment
// before it still holds the truth. A torn last line (an OS crash mid-write)
// is skipped; badLines counts such lines.
func replaySegment(path string) (st spoolState, complete bool, badLines int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return st, false, 0, fmt.Errorf("open spool segment: %w", err)
	}
	defer f.Close()
	rp := &replay{state: map[string]int{}, byID: map[string]*flush{}}
	for i := range rp.st.carried {
		rp.st.carried[i] = newAggregate()
	}
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		line, rerr := r.ReadBytes('\n')
		if len(line) > 0 {
			var rec spoolRecord
			if line[len(line)-1] != '\n' || json.Unmarshal(line, &rec) != nil {
				badLines++
			} else {
				if perr := rp.apply(rec); perr != nil {
					badLines++
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rp.st, false, badLines, fmt.Errorf("read spool segment %s: %w", path, rerr)
		}
	}
	for _, fl := range rp.order {
		switch rp.state[fl.id] {
		case flushUnacked:
			rp.st.unacked = append(rp.st.unacked, fl)
		case flushAcked:
			rp.st.acked = append(rp.st.acked, fl)
		}
	}
	return rp.st, rp.complete, badLines, nil
}

func (rp *replay) apply(rec spoolRecord) error {
	st := &rp.st
	if rec.Shard < 0 || rec.Shard >= NumShards {
		return errors.New("shard out of range")
	}
	switch rec.T {
	case recHeader:
		st.tracked = rec.V >= spoolTracked
	case recSnapshot:
		rp.complete = true
	case recCarry:
		if rec.Agg == nil {
			return errors.New("carry without aggregate")
		}
		st.carried[rec.Shard].merge(rec.Agg)
	case recCall:
		if rec.Call == nil {
			return errors.New("call record without call")
		}
		st.carried[shardOf(rec.Call.ConsumerID)].addSpooled(*rec.Call)
	case recFlush:
		if rec.Agg == nil || rec.ID == "" {
			return errors.New("flush without id or aggregate")
		}
		// The intent holds every call of its shard logged before it.
		st.carried[rec.Shard] = newAggregate()
		if _, dup := rp.byID[rec.ID]; !dup {
			fl := &flush{id: rec.ID, shard: rec.Shard, agg: rec.Agg}
			rp.byID[rec.ID] = fl
			rp.order = append(rp.order, fl)
			rp.state[rec.ID] = flushUnacked
		}
	case recAck:
		fl, ok := rp.byID[rec.ID]
		if !ok || rp.state[rec.ID] == flushSettled {
			break
		}
		if !st.tracked {
			rp.state[rec.ID] = flushSettled
			break
		}
		rp.state[rec.ID] = flushAcked
		if rec.At != 0 {
			fl.ackedAt = time.UnixMilli(rec.At)
		}
	case recConfirm:
		for _, id := range rec.IDs {
			if _, ok := rp.byID[id]; ok {
				rp.state[id] = flushSettled
			}
		}
	default:
		return fmt.Errorf("unknown record type %q", rec.T)
	}
	return nil
}

// syncDir makes a directory's entries (created, removed files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrSpoolInUse means another live process holds the spool directory.
var ErrSpoolInUse = errors.New("another process is using this spool")

// lockDir takes an exclusive advisory lock on dir, so two meters never share
// a spool. The lock goes away with the process, even on kill -9.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open spool lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock spool %s: %w", dir, ErrSpoolInUse)
		}
		return nil, fmt.Errorf("lock spool %s: %w", dir, err)
	}
	return f, nil
}
