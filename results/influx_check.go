package results

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
)

// CheckKind says what is wrong with an InfluxDB connection.
type CheckKind string

const (
	CheckUnreachable  CheckKind = "unreachable"   // nothing answers at the URL
	CheckUnauthorized CheckKind = "unauthorized"  // 401: wrong or missing token
	CheckForbidden    CheckKind = "forbidden"     // 403: the token may not write/read
	CheckNoDatabase   CheckKind = "no-database"   // 404: database / bucket missing
	CheckFluxDisabled CheckKind = "flux-disabled" // queries need [http] flux-enabled = true
	CheckOther        CheckKind = "error"
)

// CheckError is a failed connection check with a message for people.
type CheckError struct {
	Kind CheckKind
	URL  string
	Msg  string
	Err  error
}

func (e *CheckError) Error() string { return fmt.Sprintf("influxdb at %s: %s", e.URL, e.Msg) }
func (e *CheckError) Unwrap() error { return e.Err }

// Is makes a check that found nothing answering (CheckUnreachable) match
// errkind.ErrUnavailable.
func (e *CheckError) Is(target error) bool {
	return target == errkind.ErrUnavailable && e.Kind == CheckUnreachable
}

// PingReport is what `gpuorch results ping` shows.
type PingReport struct {
	URL      string        `json:"url"`
	Bucket   string        `json:"bucket"`
	Source   string        `json:"source"`
	Version  string        `json:"version,omitempty"`
	Latency  time.Duration `json:"latency_ns"`
	Write    string        `json:"write"` // "ok" or the problem
	Query    string        `json:"query"` // "ok" or the problem (Flux)
	TokenSet bool          `json:"token_set"`
}

// Check verifies, before a run, that points can be written: the server
// answers, the token is accepted and the database exists. It sends an empty
// write, which InfluxDB authenticates and checks like a real one.
func Check(ctx context.Context, cfg InfluxConfig) error {
	if _, _, err := pingServer(ctx, cfg); err != nil {
		return err
	}
	return checkWrite(ctx, cfg)
}

// Ping checks the server, the write path and the Flux query path, and
// returns a report; the error is the first problem (nil when all is well).
func Ping(ctx context.Context, cfg InfluxConfig) (PingReport, error) {
	cfg = cfg.withDefaults()
	r := PingReport{URL: cfg.URL, Bucket: cfg.Bucket, Source: cfg.Source, TokenSet: cfg.Token != ""}
	ver, lat, err := pingServer(ctx, cfg)
	r.Version, r.Latency = ver, lat
	if err != nil {
		r.Write, r.Query = "not checked", "not checked"
		return r, err
	}
	werr := checkWrite(ctx, cfg)
	r.Write = okOr(werr)
	var ce *CheckError
	if errors.As(werr, &ce) && (ce.Kind == CheckNoDatabase || ce.Kind == CheckUnauthorized) {
		r.Query = "not checked"
		return r, werr
	}
	qerr := checkQuery(ctx, cfg)
	r.Query = okOr(qerr)
	return r, errors.Join(werr, qerr)
}

func okOr(err error) string {
	if err == nil {
		return "ok"
	}
	var ce *CheckError
	if errors.As(err, &ce) {
		return ce.Msg
	}
	return err.Error()
}

func pingServer(ctx context.Context, cfg InfluxConfig) (string, time.Duration, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(cfg.URL, "/")+"/ping", nil)
	if err != nil {
		return "", 0, &CheckError{Kind: CheckOther, URL: cfg.URL, Msg: err.Error(), Err: err}
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	lat := time.Since(start)
	if err != nil {
		return "", lat, &CheckError{Kind: CheckUnreachable, URL: cfg.URL, Err: err,
			Msg: fmt.Sprintf("unreachable (%v); is InfluxDB running? For tests: test/influxdb/up.sh", rootCause(err))}
	}
	resp.Body.Close()
	ver := resp.Header.Get("X-Influxdb-Version")
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return ver, lat, &CheckError{Kind: CheckOther, URL: cfg.URL,
			Msg: fmt.Sprintf("GET /ping answered HTTP %d; is this an InfluxDB?", resp.StatusCode)}
	}
	return ver, lat, nil
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func checkWrite(ctx context.Context, cfg InfluxConfig) error {
	cfg = cfg.withDefaults()
	c := NewInfluxClient(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	err := c.WriteAPIBlocking(cfg.Org, cfg.Bucket).WriteRecord(ctx, "")
	return httpCheckError(cfg, err, "write to bucket "+cfg.Bucket)
}

func checkQuery(ctx context.Context, cfg InfluxConfig) error {
	cfg = cfg.withDefaults()
	c := NewInfluxClient(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	q := fmt.Sprintf(`from(bucket: %s) |> range(start: -1m) |> limit(n: 1)`, fluxString(cfg.Bucket))
	res, err := c.QueryAPI(cfg.Org).Query(ctx, q)
	if err == nil {
		for res.Next() {
		}
		err = res.Err()
		res.Close()
	}
	return httpCheckError(cfg, err, "Flux query on bucket "+cfg.Bucket)
}

func httpCheckError(cfg InfluxConfig, err error, what string) error {
	if err == nil {
		return nil
	}
	var he *ihttp.Error
	if !errors.As(err, &he) {
		return &CheckError{Kind: CheckOther, URL: cfg.URL, Msg: what + ": " + err.Error(), Err: err}
	}
	msg := he.Message
	if msg == "" {
		msg = he.Error()
	}
	ce := &CheckError{URL: cfg.URL, Err: err}
	switch {
	case he.StatusCode == 0:
		ce.Kind, ce.Msg = CheckUnreachable, fmt.Sprintf("%s: unreachable (%v)", what, rootCause(err))
	case he.StatusCode == 401:
		ce.Kind, ce.Msg = CheckUnauthorized, fmt.Sprintf("%s: HTTP 401 %s — wrong or missing token (GPUORCH_INFLUX_TOKEN or token_file; \"user:password\" on InfluxDB 1.8)", what, msg)
	case he.StatusCode == 403 && strings.Contains(strings.ToLower(msg), "flux"):
		ce.Kind, ce.Msg = CheckFluxDisabled, fmt.Sprintf("%s: HTTP 403 %s — set [http] flux-enabled = true in influxdb.conf", what, msg)
	case he.StatusCode == 403:
		ce.Kind, ce.Msg = CheckForbidden, fmt.Sprintf("%s: HTTP 403 %s — the token lacks permission", what, msg)
	case he.StatusCode == 404 || strings.Contains(msg, "database not found") || strings.Contains(msg, "retention policy not found") || strings.Contains(msg, "no database"):
		ce.Kind, ce.Msg = CheckNoDatabase, fmt.Sprintf("%s: %s — create it first (InfluxDB 1.8: curl -XPOST %s/query --data-urlencode 'q=CREATE DATABASE %s')", what, msg, strings.TrimRight(cfg.URL, "/"), cfg.Database())
	default:
		ce.Kind, ce.Msg = CheckOther, fmt.Sprintf("%s: HTTP %d %s", what, he.StatusCode, msg)
	}
	return ce
}

// fluxString quotes s as a Flux string literal.
func fluxString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "${", `\${`)
	return `"` + r.Replace(s) + `"`
}
