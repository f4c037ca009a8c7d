package sif

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/gpuorch/gpuorch/internal/limitio"
	ssif "github.com/sylabs/sif/v2/pkg/sif"
)

// VersionLabels are the labels Validate reads an image's version from, in
// order. The file name is tried as well.
var VersionLabels = []string{
	"org.opencontainers.image.version",
	"org.label-schema.version",
	"version",
	"VERSION",
	"Version",
}

// ValidateOptions say what a good image is for the job at hand.
type ValidateOptions struct {
	// Arch is the target nodes' architecture (Go naming, or x86_64/aarch64
	// as Slurm and uname report it); "" skips the check.
	Arch string
	// Version is the expected image version (the seed's
	// ApptainerImageVersion, e.g. "f7ffa5f_2306"); "" skips the check. It
	// matches a version label exactly, or the file name as a whole token
	// (metaseq_f7ffa5f_2306.sif).
	Version string
	// RequiredPaths must exist inside the primary partition (e.g. the
	// training entry point).
	RequiredPaths []string
	// RequireSigned fails images without a signature object (whether the
	// signature is good is Verify's job).
	RequireSigned bool
}

// Check is the outcome of one validation check.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Where the problem is, when one is found.
	Offset *int64 `json:"offset,omitempty"`
	Object uint32 `json:"object,omitempty"`
	Inside string `json:"inside,omitempty"`
}

// Report is Validate's result: every check that ran, in order.
type Report struct {
	Path   string  `json:"path"`
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
	Image  *Image  `json:"-"`
}

// Failures returns the failed checks as errors that say what and where.
func (r *Report) Failures() []error {
	var errs []error
	for _, c := range r.Checks {
		if c.OK {
			continue
		}
		e := &Error{Path: r.Path, Check: c.Name, Offset: -1, Object: c.Object, Inside: c.Inside, Msg: c.Detail}
		if c.Offset != nil {
			e.Offset = *c.Offset
		}
		errs = append(errs, e)
	}
	return errs
}

// Err is nil when every check passed, else all failures joined.
func (r *Report) Err() error { return errors.Join(r.Failures()...) }

func (r *Report) add(c Check) {
	r.Checks = append(r.Checks, c)
	if !c.OK {
		r.OK = false
	}
}

func at(off int64) *int64 { return &off }

// Validate runs every check on the image at path. An image that cannot be
// loaded at all (not a SIF, truncated) gives a report with that one failed
// check; the error return is for a path that is not a regular file (bad
// input, limitio) and I/O failures.
func Validate(ctx context.Context, path string, opts ValidateOptions) (*Report, error) {
	if _, err := limitio.Check(path, imageFile); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("validate %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("validate %s: %w", path, err)
	}
	return validate(ctx, path, f, st.Size(), opts, true), nil
}

// ValidateBytes is Validate on an image held in memory; it cannot look
// inside the squashfs, so RequiredPaths fail as unchecked.
func ValidateBytes(name string, data []byte, opts ValidateOptions) *Report {
	return validate(context.Background(), name, bytes.NewReader(data), int64(len(data)), opts, false)
}

func validate(ctx context.Context, path string, r io.ReaderAt, size int64, opts ValidateOptions, isFile bool) *Report {
	rep := &Report{Path: path, OK: true}
	img, fi, err := load(path, readOnly{r}, size)
	if err != nil {
		c := Check{Name: "load", Detail: err.Error()}
		var e *Error
		if errors.As(err, &e) {
			c.Name = e.Check
			c.Detail = e.Msg
			if e.Err != nil {
				c.Detail += ": " + e.Err.Error()
			}
			if e.Offset >= 0 {
				c.Offset = at(e.Offset)
			}
			c.Object = e.Object
		}
		rep.add(c)
		return rep
	}
	defer fi.UnloadContainer()
	file := ""
	if isFile {
		file = path
	}
	readContents(ctx, img, fi, r, file)
	rep.Image = img
	rep.add(Check{Name: "bounds", OK: true, Detail: fmt.Sprintf("%d objects inside the %d-byte file", len(img.Descriptors), size)})

	p := img.Primary
	if p == nil {
		rep.add(Check{Name: "partition", Detail: "no primary system partition"})
		return rep
	}
	if p.fsType != ssif.FsSquash {
		rep.add(Check{Name: "partition", Object: p.ID, Offset: at(p.Offset), Detail: fmt.Sprintf("primary partition filesystem is %s, want Squashfs", p.FS)})
	} else {
		rep.add(Check{Name: "partition", OK: true, Detail: fmt.Sprintf("object %d: %s, %s, %d bytes at offset %d", p.ID, p.FS, p.Arch, p.Size, p.Offset)})
	}

	var magic [4]byte
	if _, err := r.ReadAt(magic[:], p.Offset); err != nil {
		rep.add(Check{Name: "squashfs", Object: p.ID, Offset: at(p.Offset), Detail: fmt.Sprintf("cannot read superblock: %v", err)})
	} else if string(magic[:]) != SquashfsMagic {
		rep.add(Check{Name: "squashfs", Object: p.ID, Offset: at(p.Offset), Detail: fmt.Sprintf("magic %q, want %q", magic[:], SquashfsMagic)})
	} else {
		rep.add(Check{Name: "squashfs", OK: true, Detail: fmt.Sprintf("magic %q at offset %d", SquashfsMagic, p.Offset)})
	}

	if opts.Arch != "" {
		want := NormalizeArch(opts.Arch)
		if p.Arch != want {
			rep.add(Check{Name: "arch", Object: p.ID, Detail: fmt.Sprintf("primary partition is %s, target nodes are %s", p.Arch, want)})
		} else {
			rep.add(Check{Name: "arch", OK: true, Detail: p.Arch})
		}
	}

	if opts.Version != "" {
		rep.add(checkVersion(img, opts.Version))
	}

	if len(opts.RequiredPaths) > 0 {
		var ls map[string]Entry
		var err error
		switch {
		case !isFile:
			err = errors.New("in-memory image: contents not readable")
		case string(magic[:]) != SquashfsMagic:
			err = errors.New("no squashfs to look in")
		default:
			ls, err = squashFS{image: path, offset: p.Offset}.List(ctx, opts.RequiredPaths...)
		}
		for _, rp := range opts.RequiredPaths {
			e, ok := ls[cleanPath(rp)]
			switch {
			case err != nil:
				rep.add(Check{Name: "path", Object: p.ID, Offset: at(p.Offset), Inside: rp, Detail: "not checked: " + err.Error()})
			case !ok:
				rep.add(Check{Name: "path", Object: p.ID, Inside: rp, Detail: "not in the image"})
			case e.Mode[0] == 'l':
				rep.add(Check{Name: "path", OK: true, Inside: rp, Detail: fmt.Sprintf("symlink to %s", e.Target)})
			default:
				rep.add(Check{Name: "path", OK: true, Inside: rp, Detail: fmt.Sprintf("%s, %d bytes", e.Mode, e.Size)})
			}
		}
	}

	if opts.RequireSigned {
		if len(img.Signatures) == 0 {
			rep.add(Check{Name: "signed", Detail: "no signature object in the image"})
		} else {
			ids := make([]string, len(img.Signatures))
			for i, s := range img.Signatures {
				ids[i] = fmt.Sprintf("%d", s.ID)
			}
			rep.add(Check{Name: "signed", OK: true, Detail: "signature objects " + strings.Join(ids, ", ") + " (not verified)"})
		}
	}
	return rep
}

func checkVersion(img *Image, want string) Check {
	var seen []string
	if img.Metadata != nil {
		for _, k := range VersionLabels {
			v, ok := img.Metadata.Labels[k]
			if !ok {
				continue
			}
			if v == want {
				return Check{Name: "version", OK: true, Detail: fmt.Sprintf("label %s=%q", k, v)}
			}
			seen = append(seen, fmt.Sprintf("label %s=%q", k, v))
		}
	}
	base := baseName(img.Path)
	if containsToken(base, want) {
		return Check{Name: "version", OK: true, Detail: fmt.Sprintf("file name %q", base)}
	}
	seen = append(seen, fmt.Sprintf("file name %q", base))
	return Check{Name: "version", Detail: fmt.Sprintf("want %q, found %s", want, strings.Join(seen, ", "))}
}

// containsToken reports whether tok occurs in s with no letter or digit
// directly before or after it, so "1.1" does not match "11.1".
func containsToken(s, tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(s[i:], tok)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(tok)
		before := j == 0 || !isAlnum(rune(s[j-1]))
		after := end == len(s) || !isAlnum(rune(s[end]))
		if before && after {
			return true
		}
		i = j + 1
	}
}

func isAlnum(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// ArchNames lists the architecture names Validate knows: the Go names SIF
// records, then the uname/Slurm aliases NormalizeArch maps to them.
func ArchNames() []string {
	return []string{"386", "amd64", "arm", "arm64", "ppc64", "ppc64le", "mips", "mipsle", "mips64", "mips64le", "s390x", "riscv64", "loong64",
		"x86_64", "x86-64", "aarch64", "i386", "i686"}
}

// NormalizeArch maps uname/Slurm names to the Go names SIF uses.
func NormalizeArch(a string) string {
	switch strings.ToLower(a) {
	case "x86_64", "x86-64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "i386", "i686", "386":
		return "386"
	case "ppc64le":
		return "ppc64le"
	}
	return strings.ToLower(a)
}

// jsonUnmarshalLabels accepts label values of any JSON type, keeping
// non-strings as their JSON text.
func jsonUnmarshalLabels(b []byte, out *map[string]string) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	m := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			m[k] = s
		} else {
			m[k] = string(v)
		}
	}
	*out = m
	return nil
}
