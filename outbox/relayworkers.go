package outbox

import (
	"errors"
	"sync"
	"time"
)

// WorkerStatus is what one of a relay's workers did last, for an operator's
// view of a running relay (the web UI's overview).
type WorkerStatus struct {
	Worker int // 0 to RelayConfig.Workers-1
	// LastClaim is when the worker's latest claim returned; zero before its
	// first. Idle workers claim every PollInterval, or when woken.
	LastClaim time.Time
	// LastClaimed is how many events that claim took (0 when idle).
	LastClaimed int
	// LastEvents is when the worker last claimed at least one event, and
	// LastEventsClaimed how many; zero before it has.
	LastEvents        time.Time
	LastEventsClaimed int
	// LastError is the error of the latest claim, "" when it succeeded. A
	// broker outage is not an error here: the relay's BrokerDown says so.
	LastError string
	Claims    uint64 // claims since the relay started
}

// workerLog keeps each worker's WorkerStatus.
type workerLog struct {
	mu      sync.Mutex
	workers map[int]*WorkerStatus
}

// claimed records a claim of worker that took n events, or failed with err.
func (l *workerLog) claimed(worker, n int, err error, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.workers == nil {
		l.workers = make(map[int]*WorkerStatus)
	}
	w := l.workers[worker]
	if w == nil {
		w = &WorkerStatus{Worker: worker}
		l.workers[worker] = w
	}
	w.Claims++
	w.LastClaim, w.LastClaimed, w.LastError = at, n, ""
	if err != nil && !errors.Is(err, errOutage) {
		w.LastError = err.Error()
	}
	if n > 0 {
		w.LastEvents, w.LastEventsClaimed = at, n
	}
}

// Workers returns the status of each of the relay's workers that has
// claimed at least once, by worker number. It is safe to call while the
// relay runs.
func (r *Relay) Workers() []WorkerStatus {
	r.workerLog.mu.Lock()
	defer r.workerLog.mu.Unlock()
	out := make([]WorkerStatus, 0, len(r.workerLog.workers))
	for i := range r.cfg.Workers {
		if w := r.workerLog.workers[i]; w != nil {
			out = append(out, *w)
		}
	}
	return out
}
