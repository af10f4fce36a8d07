package redisstream

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Connect checks that Redis answers at cfg.Addr with the credentials given
// (PING) and that the stream's key is a stream or does not exist yet (TYPE),
// reads the server's proto-max-bulk-len unless cfg.MaxMessageBytes is set,
// and returns a Publisher. It fails when Redis is unreachable, refuses the
// credentials, or the key holds another type (ErrWrongType). No error holds
// the password.
func Connect(ctx context.Context, cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Publisher{rdb: newClient(cfg), cfg: cfg, health: newHealth(cfg.Logger, cfg.Addr)}
	if err := p.probe(ctx); err != nil {
		_ = p.rdb.Close()
		return nil, err
	}
	return p, nil
}

func (p *Publisher) probe(ctx context.Context) error {
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstream: connect to %s: %w", p.cfg.Addr, err)
	}
	typ, err := p.rdb.Type(ctx, p.cfg.Stream).Result()
	switch {
	case err != nil && redis.IsPermissionError(err):
		// A user allowed XADD but not TYPE: publishing will tell.
	case err != nil:
		return fmt.Errorf("redisstream: TYPE %s at %s: %w", p.cfg.Stream, p.cfg.Addr, err)
	case typ != "none" && typ != "stream":
		return fmt.Errorf("%w: key %q at %s is a %s", ErrWrongType, p.cfg.Stream, p.cfg.Addr, typ)
	}
	if p.cfg.MaxMessageBytes > 0 {
		p.maxBytes.Store(p.cfg.MaxMessageBytes)
		return nil
	}
	n, err := serverMaxBulk(ctx, p.rdb)
	if err != nil {
		p.cfg.Logger.Debug("redisstream: proto-max-bulk-len unknown; assuming Redis's default",
			"addr", p.cfg.Addr, "err", err, "assumed", DefaultMaxMessageBytes)
		n = DefaultMaxMessageBytes
	}
	p.maxBytes.Store(n)
	return nil
}
