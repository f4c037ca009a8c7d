package results

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/duration"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Secret holds a credential. It never prints, logs or serialises its value,
// so a config struct can be logged or dumped as JSON without leaking it.
type Secret string

func (Secret) String() string                  { return "[redacted]" }
func (Secret) GoString() string                { return "[redacted]" }
func (Secret) LogValue() slog.Value            { return slog.StringValue("[redacted]") }
func (Secret) MarshalText() ([]byte, error)    { return []byte("[redacted]"), nil }
func (s Secret) Reveal() string                { return string(s) }
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, "[redacted]") }

// InfluxConfig says where metrics go in InfluxDB and how they are batched.
// Zero values mean the defaults (see withDefaults).
type InfluxConfig struct {
	URL    string `json:"url"`
	Bucket string `json:"bucket"` // "db" or "db/rp" on InfluxDB 1.8
	Org    string `json:"org,omitempty"`
	// Token is "user:password" on 1.8 with auth, a token on 2.x, or empty.
	// It comes from GPUORCH_INFLUX_TOKEN or a 0600 token file only.
	Token     Secret `json:"-"`
	TokenFile string `json:"token_file,omitempty"`

	BatchSize     int           `json:"batch_size"`     // lines per write request
	FlushInterval time.Duration `json:"flush_interval"` // a partial batch is written after this long
	QueueBatches  int           `json:"queue_batches"`  // batches held in memory before overflowing to the spool
	Timeout       time.Duration `json:"timeout"`        // per HTTP request
	RetryMax      time.Duration `json:"retry_max"`      // longest wait between replay attempts
	Concurrency   int           `json:"concurrency"`    // write requests in flight
	EnqueueWait   time.Duration `json:"enqueue_wait"`   // longest a Write waits for queue room before spooling

	Source string `json:"source,omitempty"` // where the config came from, for messages
}

// Defaults for InfluxConfig.
const (
	DefaultInfluxBucket   = "gpuorch"
	DefaultBatchSize      = 5000
	DefaultFlushInterval  = time.Second
	DefaultQueueBatches   = 16
	DefaultInfluxTimeout  = 10 * time.Second
	DefaultRetryMax       = 10 * time.Second
	DefaultConcurrency    = 2
	DefaultEnqueueWait    = time.Second
	influxConfigEnv       = "GPUORCH_CONFIG"
	influxTokenEnv        = "GPUORCH_INFLUX_TOKEN"
	influxTokenFileEnv    = "GPUORCH_INFLUX_TOKEN_FILE"
	influxURLEnv          = "GPUORCH_INFLUX_URL"
	influxBucketEnv       = "GPUORCH_INFLUX_BUCKET"
	influxOrgEnv          = "GPUORCH_INFLUX_ORG"
	influxBatchSizeEnv    = "GPUORCH_INFLUX_BATCH_SIZE"
	influxFlushEnv        = "GPUORCH_INFLUX_FLUSH_INTERVAL"
	influxQueueBatchesEnv = "GPUORCH_INFLUX_QUEUE_BATCHES"
)

// Configured reports whether an InfluxDB URL is set.
func (c InfluxConfig) Configured() bool { return c.URL != "" }

// Database returns the database part of the bucket ("db" of "db/rp").
func (c InfluxConfig) Database() string {
	db, _, _ := strings.Cut(c.Bucket, "/")
	return db
}

func (c InfluxConfig) withDefaults() InfluxConfig {
	if c.Bucket == "" {
		c.Bucket = DefaultInfluxBucket
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.QueueBatches <= 0 {
		c.QueueBatches = DefaultQueueBatches
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultInfluxTimeout
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.EnqueueWait <= 0 {
		c.EnqueueWait = DefaultEnqueueWait
	}
	return c
}

// Validate checks the URL and bucket.
func (c InfluxConfig) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("influxdb url %q (from %s): want http://host:port", c.URL, c.sourceName())
	}
	if u.User != nil {
		return fmt.Errorf("influxdb url (from %s) holds credentials; put them in %s or a token file instead", c.sourceName(), influxTokenEnv)
	}
	if c.Bucket != "" {
		db, rp, hasRP := strings.Cut(c.Bucket, "/")
		if db == "" || (hasRP && (rp == "" || strings.Contains(rp, "/"))) {
			return fmt.Errorf("influxdb bucket %q (from %s): want \"db\" or \"db/retention-policy\"", c.Bucket, c.sourceName())
		}
	}
	return nil
}

func (c InfluxConfig) sourceName() string {
	if c.Source == "" {
		return "configuration"
	}
	return c.Source
}

// influxFileConfig is the [influxdb] table of the config file.
type influxFileConfig struct {
	URL           string            `toml:"url"`
	Bucket        string            `toml:"bucket"`
	Org           string            `toml:"org"`
	TokenFile     string            `toml:"token_file"`
	BatchSize     int               `toml:"batch_size"`
	FlushInterval duration.Duration `toml:"flush_interval"`
	QueueBatches  int               `toml:"queue_batches"`
	Timeout       duration.Duration `toml:"timeout"`
	RetryMax      duration.Duration `toml:"retry_max"`
	Concurrency   int               `toml:"concurrency"`
	EnqueueWait   duration.Duration `toml:"enqueue_wait"`
}

// DefaultConfigPath is $GPUORCH_CONFIG, else ~/.config/gpuorch/config.toml
// (under $XDG_CONFIG_HOME when set).
func DefaultConfigPath(getenv func(string) string) string {
	if p := getenv(influxConfigEnv); p != "" {
		return p
	}
	base := getenv("XDG_CONFIG_HOME")
	if base == "" {
		home := getenv("HOME")
		if home == "" {
			return ""
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "gpuorch", "config.toml")
}

// LoadInfluxConfig reads the InfluxDB settings: the [influxdb] table of the
// config file (DefaultConfigPath; a missing file is fine unless named by
// $GPUORCH_CONFIG), then GPUORCH_INFLUX_* environment variables, which win.
// The token comes from $GPUORCH_INFLUX_TOKEN, else from the token file
// ($GPUORCH_INFLUX_TOKEN_FILE or token_file), which must not be readable by
// group or others. getenv is os.Getenv outside tests.
func LoadInfluxConfig(getenv func(string) string) (InfluxConfig, error) {
	var c InfluxConfig
	path := DefaultConfigPath(getenv)
	if path != "" {
		fc, found, err := readInfluxFile(path, getenv(influxConfigEnv) != "")
		if err != nil {
			return c, err
		}
		if found {
			c = InfluxConfig{
				URL: fc.URL, Bucket: fc.Bucket, Org: fc.Org, TokenFile: expandHome(fc.TokenFile, getenv),
				BatchSize: fc.BatchSize, FlushInterval: fc.FlushInterval.D(), QueueBatches: fc.QueueBatches,
				Timeout: fc.Timeout.D(), RetryMax: fc.RetryMax.D(), Source: path,
				Concurrency: fc.Concurrency, EnqueueWait: fc.EnqueueWait.D(),
			}
		}
	}
	envSet := false
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst, envSet = v, true
		}
	}
	str(influxURLEnv, &c.URL)
	str(influxBucketEnv, &c.Bucket)
	str(influxOrgEnv, &c.Org)
	str(influxTokenFileEnv, &c.TokenFile)
	if v := getenv(influxBatchSizeEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive integer", influxBatchSizeEnv, v)
		}
		c.BatchSize, envSet = n, true
	}
	if v := getenv(influxQueueBatchesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive integer", influxQueueBatchesEnv, v)
		}
		c.QueueBatches, envSet = n, true
	}
	if v := getenv(influxFlushEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%s=%q: want a duration such as 1s", influxFlushEnv, v)
		}
		c.FlushInterval, envSet = d, true
	}
	if envSet {
		if c.Source != "" {
			c.Source += " and GPUORCH_INFLUX_* environment"
		} else {
			c.Source = "GPUORCH_INFLUX_* environment"
		}
	}
	if !c.Configured() {
		return InfluxConfig{}, nil
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	if tok := getenv(influxTokenEnv); tok != "" {
		c.Token = Secret(tok)
	} else if c.TokenFile != "" {
		tok, err := ReadTokenFile(c.TokenFile)
		if err != nil {
			return c, err
		}
		c.Token = tok
	}
	return c.withDefaults(), nil
}

// readInfluxFile reads the [influxdb] table of a config file strictly.
// Other tables belong to other parts of gpuorch; only [influxdb] is ours,
// and in it every key must be known.
func readInfluxFile(path string, mustExist bool) (influxFileConfig, bool, error) {
	src, err := limitio.ReadFile(path, limitio.Config)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !mustExist {
			return influxFileConfig{}, false, nil
		}
		return influxFileConfig{}, false, fmt.Errorf("config %s: %w", path, err)
	}
	doc, err := tomlstrict.Parse(path, src)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// The parser's own report shows the line in context.
			return influxFileConfig{}, false, errkind.Invalid(fmt.Errorf("config %s: %s", path, pe.ErrorWithPosition()))
		}
		return influxFileConfig{}, false, fmt.Errorf("config %w", err)
	}
	tbl, ok := doc.Tree["influxdb"]
	if !ok {
		return influxFileConfig{}, false, nil
	}
	if m, ok := tbl.(map[string]any); ok {
		if _, ok := m["token"]; ok {
			return influxFileConfig{}, false, fmt.Errorf("config %w", doc.Errorf([]string{"influxdb", "token"},
				"[influxdb] token is not allowed in the config file; put the token in %s or in a 0600 file named by token_file", influxTokenEnv))
		}
	}
	var file struct {
		InfluxDB *influxFileConfig `toml:"influxdb"`
	}
	if err := doc.Decode(nil, map[string]any{"influxdb": tbl}, &file); err != nil {
		return influxFileConfig{}, false, fmt.Errorf("config %w", err)
	}
	return *file.InfluxDB, true, nil
}

func expandHome(p string, getenv func(string) string) string {
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(getenv("HOME"), p[2:])
	}
	return p
}

// ReadTokenFile reads a token from a file that only its owner can read.
func ReadTokenFile(path string) (Secret, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("influxdb token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("influxdb token file %s is readable by group or others (mode %04o); run: %s", clip.String(path), fi.Mode().Perm(), sbatch.CommandLine("chmod", "600", path))
	}
	b, err := limitio.ReadFile(path, limitio.Small.As("token file"))
	if err != nil {
		return "", fmt.Errorf("influxdb token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("influxdb token file %s is empty", path)
	}
	return Secret(tok), nil
}
