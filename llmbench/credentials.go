package llmbench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Credentials are secrets (API keys of cloud model endpoints) referenced by
// name. They live in a 0600 JSON file, or in the environment as
// GPUORCH_CREDENTIAL_<NAME> (which wins). Only the name ever appears in
// specs, plans, manifests, scripts and state; the secret reaches the load
// generator in the environment variable CredentialEnv(name).
type Credentials struct {
	Path string
}

// credentialRecord is one stored credential.
type credentialRecord struct {
	Secret string    `json:"secret"`
	Added  time.Time `json:"added"`
}

// DefaultCredentialsPath is $GPUORCH_CREDENTIALS, else
// $XDG_CONFIG_HOME/gpuorch/credentials.json (~/.config/…).
func DefaultCredentialsPath() string {
	if p := os.Getenv("GPUORCH_CREDENTIALS"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "gpuorch", "credentials.json")
}

// ErrLoosePerms is returned when the credentials file is readable by others.
var ErrLoosePerms = errkind.Invalid(errors.New("credentials file is readable or writable by others"))

func (c *Credentials) load() (map[string]credentialRecord, error) {
	m := map[string]credentialRecord{}
	st, err := os.Stat(c.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o: %w; run %s", clip.String(c.Path), st.Mode().Perm(), ErrLoosePerms, sbatch.CommandLine("chmod", "600", c.Path))
	}
	b, err := limitio.ReadFile(c.Path, limitio.Config.As("credentials file"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Path, err)
	}
	return m, nil
}

// Get returns a credential's secret: from the environment, else the file.
func (c *Credentials) Get(name string) (string, error) {
	if v := os.Getenv(CredentialEnv(name)); v != "" {
		return v, nil
	}
	m, err := c.load()
	if err != nil {
		return "", err
	}
	r, ok := m[name]
	if !ok {
		return "", fmt.Errorf("unknown credential %s (add it with `%s`, or set $%s)", clip.Quote(name), sbatch.CommandLine("gpuorch", "credentials", "add", name), clip.String(CredentialEnv(name)))
	}
	return r.Secret, nil
}

// Add stores a credential (replacing one of the same name), creating the
// file with mode 0600.
func (c *Credentials) Add(name, secret string) error {
	if !orchestrator.NameRE.MatchString(name) {
		return fmt.Errorf("credential name %s: want lowercase letters, digits, '.', '_' or '-'", clip.Quote(name))
	}
	if secret == "" {
		return errors.New("empty secret")
	}
	m, err := c.load()
	if err != nil {
		return err
	}
	m[name] = credentialRecord{Secret: secret, Added: time.Now().UTC()}
	return c.save(m)
}

// Remove deletes a credential.
func (c *Credentials) Remove(name string) error {
	m, err := c.load()
	if err != nil {
		return err
	}
	if _, ok := m[name]; !ok {
		return fmt.Errorf("unknown credential %q", name)
	}
	delete(m, name)
	return c.save(m)
}

// CredentialInfo is what List shows: never the secret.
type CredentialInfo struct {
	Name   string    `json:"name"`
	Source string    `json:"source"` // "file" or "env"
	Added  time.Time `json:"added,omitzero"`
}

// List names the stored credentials.
func (c *Credentials) List() ([]CredentialInfo, error) {
	m, err := c.load()
	if err != nil {
		return nil, err
	}
	var out []CredentialInfo
	for k, r := range m {
		out = append(out, CredentialInfo{Name: k, Source: "file", Added: r.Added})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (c *Credentials) save(m map[string]credentialRecord) error {
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
		return err
	}
	// 0600 from the first byte: atomicfile sets the mode before writing.
	return atomicfile.WriteJSON(c.Path, m, 0o600)
}

// DefaultCredentials is the user's credential store.
func DefaultCredentials() *Credentials { return &Credentials{Path: DefaultCredentialsPath()} }
