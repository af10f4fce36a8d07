package redisstream

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// minMaxBulk is the lowest proto-max-bulk-len Redis can be configured with
// (1 MiB): a body no longer than this is never refused for its size.
const minMaxBulk = 1 << 20

// serverMaxBulk asks the server for its proto-max-bulk-len, the longest
// argument it accepts. Managed services often refuse CONFIG.
func serverMaxBulk(ctx context.Context, rdb *redis.Client) (int64, error) {
	res, err := rdb.ConfigGet(ctx, "proto-max-bulk-len").Result()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(res["proto-max-bulk-len"], 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("proto-max-bulk-len %q", res["proto-max-bulk-len"])
	}
	return n, nil
}

// refreshLimit reads the server's limit again after a batch with a long
// body failed, in case the server now refuses it (and closed the
// connection on the whole batch rather than refusing just that message).
func (p *Publisher) refreshLimit(ctx context.Context) {
	if !p.recheck.CompareAndSwap(true, false) {
		return
	}
	if n, err := serverMaxBulk(ctx, p.rdb); err == nil && n != p.maxBytes.Load() {
		p.cfg.Logger.Info("redisstream: the server's proto-max-bulk-len changed",
			"addr", p.cfg.Addr, "was", p.maxBytes.Load(), "now", n)
		p.maxBytes.Store(n)
	}
}
