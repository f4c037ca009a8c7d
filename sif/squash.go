package sif

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"
)

// SquashfsMagic starts every squashfs superblock.
const SquashfsMagic = "hsqs"

// ErrNoUnsquashfs is returned when reading inside an image needs unsquashfs
// and it is not installed.
var ErrNoUnsquashfs = errors.New("unsquashfs not found (apt-get install squashfs-tools)")

// ErrNotInImage is wrapped by errors about paths missing from the image.
var ErrNotInImage = errors.New("not in the image")

// squashTimeout bounds one unsquashfs run; reading a label file takes
// milliseconds, so hitting it means a pathological filesystem.
const squashTimeout = 30 * time.Second

// Files inside the squashfs are read with unsquashfs (Debian's
// squashfs-tools), not with a pure-Go reader: the one we tried
// (CalebQ42/squashfs) trusts length fields, and fuzzing found inputs that
// make it allocate gigabytes. unsquashfs checks its input, runs in its own
// process under a timeout, and is what image builders have anyway.
type squashFS struct {
	image  string // SIF file
	offset int64  // partition offset
}

func (s squashFS) run(ctx context.Context, limit int64, args ...string) ([]byte, string, error) {
	bin, err := exec.LookPath("unsquashfs")
	if err != nil {
		return nil, "", ErrNoUnsquashfs
	}
	ctx, cancel := context.WithTimeout(ctx, squashTimeout)
	defer cancel()
	full := append([]string{"-o", strconv.FormatInt(s.offset, 10)}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("unsquashfs: %w", err)
	}
	b, rerr := io.ReadAll(io.LimitReader(out, limit+1))
	if int64(len(b)) > limit {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, "", fmt.Errorf("larger than the %d-byte limit", limit)
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return nil, "", fmt.Errorf("unsquashfs on the partition at offset %d: %w", s.offset, ctx.Err())
	}
	if rerr != nil {
		return nil, "", rerr
	}
	return b, strings.TrimSpace(stderr.String()), werr
}

// ReadFile returns the contents of the regular file at p (absolute path).
func (s squashFS) ReadFile(ctx context.Context, p string) ([]byte, error) {
	b, stderr, err := s.run(ctx, maxMetadataSize, "-cat", s.image, cleanPath(p))
	if err != nil {
		if errors.Is(err, ErrNoUnsquashfs) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		if strings.Contains(stderr, "no matches for") {
			return nil, fmt.Errorf("%s: %w", p, ErrNotInImage)
		}
		return nil, fmt.Errorf("%s: unsquashfs: %v: %s", p, err, stderr)
	}
	return b, nil
}

// Entry is one listed path inside the image.
type Entry struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"` // ls-style, e.g. "-rwxr-xr-x"
	Size   int64  `json:"size"`
	Target string `json:"target,omitempty"` // symlink target
}

// List lists the given absolute paths, directories with their contents.
// Paths that do not exist are absent from the result.
func (s squashFS) List(ctx context.Context, paths ...string) (map[string]Entry, error) {
	args := []string{"-lls", "-d", "/", s.image}
	for _, p := range paths {
		args = append(args, cleanPath(p))
	}
	b, stderr, err := s.run(ctx, maxMetadataSize, args...)
	if err != nil {
		return nil, fmt.Errorf("list: unsquashfs: %v: %s", err, stderr)
	}
	out := map[string]Entry{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// -rwxr-xr-x root/root   22 2026-01-02 03:04 //opt/metaseq/train.sh
		f := strings.Fields(sc.Text())
		if len(f) < 6 || len(f[0]) != 10 {
			continue
		}
		rest := strings.Join(f[5:], " ")
		e := Entry{Mode: f[0]}
		e.Size, _ = strconv.ParseInt(f[2], 10, 64)
		if i := strings.Index(rest, " -> "); i >= 0 && f[0][0] == 'l' {
			rest, e.Target = rest[:i], rest[i+4:]
		}
		e.Path = cleanPath(rest)
		out[e.Path] = e
	}
	return out, sc.Err()
}

func cleanPath(p string) string { return path.Clean("/" + p) }

// metadataFromSquashfs reads what Apptainer's `inspect` falls back to:
// /.singularity.d/labels.json, env/*.sh and runscript.
func metadataFromSquashfs(ctx context.Context, s squashFS) (*Metadata, error) {
	ls, err := s.List(ctx, "/.singularity.d")
	if err != nil {
		return nil, err
	}
	md := &Metadata{Source: "squashfs:/.singularity.d"}
	found := false
	if e, ok := ls["/.singularity.d/labels.json"]; ok && e.Mode[0] == '-' {
		found = true
		b, err := s.ReadFile(ctx, e.Path)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(b)) > 0 {
			if err := jsonUnmarshalLabels(b, &md.Labels); err != nil {
				return nil, fmt.Errorf("/.singularity.d/labels.json: %w", err)
			}
		}
	}
	for p, e := range ls {
		if path.Dir(p) != "/.singularity.d/env" || e.Mode[0] != '-' || !strings.HasSuffix(p, ".sh") {
			continue
		}
		found = true
		b, err := s.ReadFile(ctx, p)
		if err != nil {
			return nil, err
		}
		if md.Environment == nil {
			md.Environment = map[string]string{}
		}
		md.Environment[path.Base(p)] = string(b)
	}
	if e, ok := ls["/.singularity.d/runscript"]; ok && e.Mode[0] == '-' {
		found = true
		b, err := s.ReadFile(ctx, e.Path)
		if err != nil {
			return nil, err
		}
		md.Runscript = string(b)
	}
	if !found {
		return nil, nil
	}
	return md, nil
}
