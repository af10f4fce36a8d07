package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// secretForms are connection strings in every form pgx and the broker
// clients accept, each with its secret spelled SECRET (in some encoding).
var secretForms = []struct {
	raw  string
	want string // RedactURL's result; "" to check only that SECRET is gone
}{
	{"postgres://u:SECRET@h:5432/db", "postgres://u:xxxxx@h:5432/db"},
	{"postgresql://u:SECRET@h/db?sslmode=disable", "postgresql://u:xxxxx@h/db?sslmode=disable"},
	{"postgres://u@h:1/db?password=SECRET", "postgres://u@h:1/db?password=xxxxx"},
	{"postgres://u@h:1/db?sslmode=disable&password=SECRET&application_name=a", "postgres://u@h:1/db?sslmode=disable&password=xxxxx&application_name=a"},
	{"postgres://u@h/db?sslpassword=SECRET&sslkey=/k", "postgres://u@h/db?sslpassword=xxxxx&sslkey=/k"},
	{"postgres://u@h/db?pass%77ord=SECRET", "postgres://u@h/db?pass%77ord=xxxxx"},
	{"postgres://u@h/db?PASSWORD=SECRET", "postgres://u@h/db?PASSWORD=xxxxx"},
	{"postgres://u:SECRET@h1:5432,h2:5433/db?password=SECRET", "postgres://u:xxxxx@h1:5432,h2:5433/db?password=xxxxx"},
	{"postgres://u:SE%40CRET@h/db", "postgres://u:xxxxx@h/db"},
	{"postgres://u:SE/CRET@h/db", "postgres://u:xxxxx@h/db"},
	{"postgres://u:SE?CRET@h/db", ""},
	{"postgres://u:SE,CRET@h/db", ""},
	{"postgres://u:SECRET@h:port/db", "postgres://u:xxxxx@h:port/db"},
	{"POSTGRES://u:SECRET@h/db", "POSTGRES://u:xxxxx@h/db"},
	{"host=h port=1 password=SECRET", "host=h port=1 password=xxxxx"},
	{"host=h password=SECRET port=1", "host=h password=xxxxx port=1"},
	{"host=h password = SECRET port=1", "host=h password = xxxxx port=1"},
	{"host=h password='SE CRET' dbname=db", "host=h password=xxxxx dbname=db"},
	{`host=h password='SE\'CRET' dbname=db`, "host=h password=xxxxx dbname=db"},
	{`host=h password=SE\ CRET dbname=db`, "host=h password=xxxxx dbname=db"},
	{"host=h password='SECRET", "host=h password=xxxxx"},
	{"host=h password=SE CRET port=1", "host=h password=xxxxx port=1"},
	{"host=h sslpassword=SECRET sslkey=/k", "host=h sslpassword=xxxxx sslkey=/k"},
	{"  user=u\tpassword=SECRET\tdbname=db", "  user=u\tpassword=xxxxx\tdbname=db"},
	{"amqp://user:SECRET@h:5672/vhost", "amqp://user:xxxxx@h:5672/vhost"},
	{"redis://:SECRET@h:6379/0", "redis://:xxxxx@h:6379/0"},
	{"nats://user:SECRET@h:4222,nats://h2:4222", "nats://user:xxxxx@h:4222,nats://h2:4222"},
	{"nats://SECRET@h:4222", "nats://xxxxx@h:4222"},
	{"tls://SECRET@h:4222,tls://u:SECRET@h2:4222", "tls://xxxxx@h:4222,tls://u:xxxxx@h2:4222"},
	{"u:SECRET@h:5432/db", "u:xxxxx@h:5432/db"},
	{"kafka://u:SECRET@h:9092,h2:9092", "kafka://u:xxxxx@h:9092,h2:9092"},
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tt := range secretForms {
		got := RedactURL(tt.raw)
		if strings.Contains(got, "SECRET") || strings.Contains(got, "CRET") {
			t.Errorf("RedactURL(%q) = %q: shows the secret", tt.raw, got)
		}
		if tt.want != "" && got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
	// What holds no secret stays as it is.
	for _, raw := range []string{
		"postgres://u@h:5432/db?sslmode=disable",
		"host=h port=5432 user=u dbname=db",
		"nats://h:4222,nats://h2:4222",
		"sqlite://./herald-data/herald.db",
		"embedded",
	} {
		if got := RedactURL(raw); got != raw {
			t.Errorf("RedactURL(%q) = %q, want it unchanged", raw, got)
		}
	}
}

// Every form of a PostgreSQL connection string: ParseDatabaseURL accepts
// what pgx accepts, and neither its refusal nor any message shows SECRET.
func TestParseDatabaseURLHidesPasswords(t *testing.T) {
	t.Parallel()
	for _, tt := range secretForms {
		if !strings.HasPrefix(strings.ToLower(tt.raw), "postgres") && !isKeyValueDSN(tt.raw) {
			continue
		}
		_, pgxErr := pgxpool.ParseConfig(tt.raw)
		spec, err := ParseDatabaseURL(tt.raw, "")
		switch {
		case err != nil:
			if strings.Contains(err.Error(), "CRET") {
				t.Errorf("ParseDatabaseURL(%q): %v: shows the secret", tt.raw, err)
			}
			if !IsUsageError(err) {
				t.Errorf("ParseDatabaseURL(%q): %v is no usage error", tt.raw, err)
			}
			if pgxErr == nil && !strings.HasPrefix(tt.raw, "POSTGRES") {
				t.Errorf("ParseDatabaseURL(%q) refuses what pgx accepts: %v", tt.raw, err)
			}
		case spec.Kind != Postgres:
			t.Errorf("ParseDatabaseURL(%q) = %+v, want PostgreSQL", tt.raw, spec)
		}
	}
	spec, err := ParseDatabaseURL("host=127.0.0.1 port=5432 user=u dbname=db password='a b'", "")
	if err != nil || spec.Kind != Postgres || spec.URL != "host=127.0.0.1 port=5432 user=u dbname=db password='a b'" {
		t.Errorf("key=value string: %+v, %v", spec, err)
	}
	// pgx takes the scheme in lower case only.
	if spec, err := ParseDatabaseURL("POSTGRES://u@h/db", ""); err != nil || spec.URL != "postgres://u@h/db" {
		t.Errorf("upper-case scheme: %+v, %v", spec, err)
	}
}

// pgx's own refusals: their detail is kept when it shows no part of the
// password, withheld when it would.
func TestParseProblem(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, want string }{
		{"postgres://u:SECRET@h:notaport/db", "invalid port"},
		{"host=h port=notaport password=SECRET", "invalid port"},
		{"host=h password='SECRET", "unterminated quoted string"},
		{"host=h password=SECR ETXY port=1", ""},
		{"postgres://u:SECR%zzETXY@h/db", ""},
		{"postgres://u:SECR/ETXY@h/db", ""},
		{"postgres://u@h/db?password=SECRET&connect_timeout=x", "connect_timeout"},
	}
	for _, tt := range tests {
		_, err := pgxpool.ParseConfig(tt.raw)
		if err == nil {
			t.Errorf("pgx accepts %q", tt.raw)
			continue
		}
		got := parseProblem(err, tt.raw)
		for _, frag := range []string{"SECR", "ECRE", "CRET", "ETXY"} {
			if strings.Contains(got, frag) {
				t.Errorf("parseProblem(%q) = %q: shows %q", tt.raw, got, frag)
			}
		}
		if tt.want != "" && !strings.Contains(got, tt.want) {
			t.Errorf("parseProblem(%q) = %q, want it to say %q", tt.raw, got, tt.want)
		}
	}
}

func TestRedactError(t *testing.T) {
	t.Parallel()
	cause := &pgconn.PgError{Code: "28P01", Message: "password authentication failed"}
	err := fmt.Errorf("connect with postgres://u:SECRET@h/db?sslpassword=KEYPASS (PGPASSWORD FROMENV): %w", cause)
	got := RedactError(err, "postgres://u:SECRET@h/db?sslpassword=KEYPASS", "FROMENV")
	for _, s := range []string{"SECRET", "KEYPASS", "FROMENV"} {
		if strings.Contains(got.Error(), s) {
			t.Errorf("RedactError: %q shows %s", got, s)
		}
	}
	var pgErr *pgconn.PgError
	if !errors.As(got, &pgErr) || !errors.Is(got, cause) {
		t.Errorf("RedactError(%v) lost its cause", got)
	}
	if RedactError(nil, "x") != nil {
		t.Error("RedactError(nil) is not nil")
	}
	plain := errors.New("no secret here")
	if RedactError(plain, "postgres://u:SECRET@h/db") != plain { //nolint:errorlint // the same value
		t.Error("RedactError wrapped an error without secrets")
	}
}

// OpenDatabase on a port where nothing listens: the error names the
// database redacted, in every form.
func TestOpenDatabaseHidesPassword(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"postgres://u@127.0.0.1:1/db?password=SECRET&sslmode=disable",
		"postgres://u:SECRET@127.0.0.1:1/db?sslmode=disable",
		"host=127.0.0.1 port=1 user=u dbname=db sslmode=disable password=SECRET",
		"host=127.0.0.1 port=1 user=u dbname=db sslmode=disable password='SE CRET'",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		db, err := OpenDatabase(ctx, Config{DatabaseURL: raw})
		cancel()
		if err == nil {
			_ = db.Close()
			t.Errorf("OpenDatabase(%q) succeeded on a closed port", raw)
			continue
		}
		if strings.Contains(err.Error(), "CRET") {
			t.Errorf("OpenDatabase(%q): %v: shows the password", raw, err)
		}
		if !strings.Contains(err.Error(), "cannot connect to PostgreSQL") {
			t.Errorf("OpenDatabase(%q): %v", raw, err)
		}
	}
}

// A webhook URL's path and query may hold the endpoint's token: shown as
// scheme and host only.
func TestRedactWebhookURL(t *testing.T) {
	t.Parallel()
	got := RedactURL("https://hooks.example.com/services/T0/B0/SECRETPATH?token=SECRETQ")
	if got != "https://hooks.example.com/…" {
		t.Errorf("RedactURL = %q", got)
	}
}
