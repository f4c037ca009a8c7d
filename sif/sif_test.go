package sif_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sif"
	"github.com/gpuorch/gpuorch/sif/siftest"
)

// fixtures are built once per test binary: mksquashfs and key generation
// dominate the cost.
type fixtures struct {
	dir                   string
	good, signed, other   string // unsigned good image; signed by keyA; signed by keyB
	noMeta, arm64, tamper string
	keyA, keyB            *openpgp.Entity
	keyAFile, keyBFile    string
}

var (
	fixOnce sync.Once
	fix     *fixtures
	fixErr  error
)

const version = "f7ffa5f_2306"

func baseOptions() siftest.Options {
	return siftest.Options{
		Labels:    map[string]string{"org.opencontainers.image.version": version, "maintainer": "gpuorch"},
		Env:       map[string]string{"METASEQ_HOME": "/opt/metaseq_stack"},
		Runscript: "#!/bin/sh\nexec metaseq-train \"$@\"\n",
		Files:     map[string]string{"/opt/metaseq/train.sh": "#!/bin/sh\necho train\n"},
		Deffile:   "Bootstrap: localimage\nFrom: base.sif\n",
	}
}

func getFixtures(t testing.TB) *fixtures {
	t.Helper()
	testgate.Mksquashfs(t)
	if err := buildFixtures(); err != nil {
		t.Fatalf("building test images: %v", err)
	}
	return fix
}

func buildFixtures() error {
	fixOnce.Do(func() {
		f := &fixtures{}
		f.dir, fixErr = os.MkdirTemp("", "gpuorch-siftest-")
		if fixErr != nil {
			return
		}
		p := func(n string) string { return filepath.Join(f.dir, n) }
		if f.keyA, fixErr = siftest.NewKey("Key A", "a@example.org"); fixErr != nil {
			return
		}
		if f.keyB, fixErr = siftest.NewKey("Key B", "b@example.org"); fixErr != nil {
			return
		}
		f.keyAFile, f.keyBFile = p("a.asc"), p("b.asc")
		if fixErr = siftest.WritePublicKey(f.keyAFile, f.keyA); fixErr != nil {
			return
		}
		if fixErr = siftest.WritePublicKey(f.keyBFile, f.keyB); fixErr != nil {
			return
		}
		build := func(name string, mod func(*siftest.Options)) string {
			if fixErr != nil {
				return ""
			}
			o := baseOptions()
			if mod != nil {
				mod(&o)
			}
			fixErr = siftest.Build(p(name), o)
			return p(name)
		}
		f.good = build("metaseq_"+version+".sif", nil)
		f.signed = build("signed.sif", func(o *siftest.Options) { o.Sign = f.keyA })
		f.noMeta = build("nometa.sif", func(o *siftest.Options) { o.NoMetadataObject = true })
		f.arm64 = build("arm64.sif", func(o *siftest.Options) { o.Arch = "arm64" })
		f.tamper = build("tampered.sif", func(o *siftest.Options) { o.Sign = f.keyA })
		if fixErr != nil {
			return
		}
		off, err := siftest.PartitionOffset(f.tamper)
		if err != nil {
			fixErr = err
			return
		}
		fixErr = siftest.FlipByte(f.tamper, off+100)
		fix = f
	})
	return fixErr
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		os.RemoveAll(fix.dir)
	}
	os.Exit(code)
}

// variant copies src into a temp file and applies mod to its bytes.
func variant(t *testing.T, src string, mod func([]byte) []byte) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(p, mod(b), 0o444); err != nil { // read-only on purpose
		t.Fatal(err)
	}
	return p
}

func TestInspect(t *testing.T) {
	f := getFixtures(t)
	ro := variant(t, f.good, func(b []byte) []byte { return b })
	img, err := sif.Inspect(context.Background(), ro, sif.InspectOptions{})
	if err != nil {
		t.Fatalf("Inspect read-only copy: %v", err)
	}
	if img.Header.Version != "01" || img.Header.Arch != "amd64" || img.Header.ID == "" {
		t.Errorf("header = %+v", img.Header)
	}
	if len(img.Descriptors) != 3 {
		t.Fatalf("descriptors = %d, want 3 (deffile, metadata, partition): %+v", len(img.Descriptors), img.Descriptors)
	}
	if img.Primary == nil || img.Primary.FS != "Squashfs" || img.Primary.Arch != "amd64" || img.Primary.PartType != "*System" {
		t.Fatalf("primary = %+v", img.Primary)
	}
	if img.Primary.Offset%4096 != 0 || img.Primary.Offset+img.Primary.Size > img.FileSize {
		t.Errorf("primary extent [%d,+%d) in %d-byte file", img.Primary.Offset, img.Primary.Size, img.FileSize)
	}
	if img.Deffile != baseOptions().Deffile {
		t.Errorf("deffile = %q", img.Deffile)
	}
	if img.Metadata == nil || img.Metadata.Source != sif.InspectMetadataName {
		t.Fatalf("metadata = %+v", img.Metadata)
	}
	if got := img.Metadata.Labels["org.opencontainers.image.version"]; got != version {
		t.Errorf("version label = %q", got)
	}
	if !strings.Contains(img.Metadata.Environment["90-environment.sh"], "METASEQ_HOME") {
		t.Errorf("environment = %v", img.Metadata.Environment)
	}
	if len(img.Signatures) != 0 {
		t.Errorf("unsigned image has signatures %v", img.Signatures)
	}

	// Headers only: no object data read.
	h, err := sif.Inspect(context.Background(), f.good, sif.InspectOptions{HeadersOnly: true})
	if err != nil || h.Metadata != nil || h.Deffile != "" || len(h.Descriptors) != 3 {
		t.Errorf("HeadersOnly: err=%v metadata=%v deffile=%q", err, h.Metadata, h.Deffile)
	}

	s, err := sif.Inspect(context.Background(), f.signed, sif.InspectOptions{HeadersOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Signatures) != 1 || !s.Signatures[0].LinkedGroup || s.Signatures[0].Signs != 1 {
		t.Fatalf("signatures = %+v", s.Signatures)
	}
	if want := strings.ToUpper(hexFP(f.keyA)); s.Signatures[0].Fingerprint != want {
		t.Errorf("fingerprint = %s, want %s", s.Signatures[0].Fingerprint, want)
	}
}

func hexFP(e *openpgp.Entity) string {
	const hexdig = "0123456789abcdef"
	var b strings.Builder
	for _, c := range e.PrimaryKey.Fingerprint {
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}

func TestInspectFallsBackToSquashfs(t *testing.T) {
	f := getFixtures(t)
	img, err := sif.Inspect(context.Background(), f.noMeta, sif.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Metadata == nil || img.Metadata.Source != "squashfs:/.singularity.d" {
		t.Fatalf("metadata = %+v, warnings %v", img.Metadata, img.Warnings)
	}
	if img.Metadata.Labels["maintainer"] != "gpuorch" || !strings.Contains(img.Metadata.Runscript, "metaseq-train") ||
		!strings.Contains(img.Metadata.Environment["90-environment.sh"], "METASEQ_HOME") {
		t.Errorf("metadata = %+v", img.Metadata)
	}
}

func TestBrokenImages(t *testing.T) {
	f := getFixtures(t)
	img, err := sif.Inspect(context.Background(), f.good, sif.InspectOptions{HeadersOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	part := img.Primary
	tests := []struct {
		name      string
		path      string
		wantCheck string // the failing check
		wantIn    []string
		version   string // expected version, default the fixtures'
	}{
		{"truncated in partition", variant(t, f.good, func(b []byte) []byte { return b[:len(b)-1000] }),
			"bounds", []string{"object 3", "past the end", "truncated"}, ""},
		{"truncated in header", variant(t, f.good, func(b []byte) []byte { return b[:100] }),
			"header", []string{"shorter than the 128-byte SIF header"}, ""},
		{"truncated in descriptors", variant(t, f.good, func(b []byte) []byte { return b[:400] }),
			"bounds", []string{"descriptor table", "truncated"}, ""},
		{"not a SIF", variant(t, f.good, func(b []byte) []byte { b[32] = 'X'; return b }),
			"header", []string{"at offset 32", "magic"}, ""},
		{"wrong squashfs magic", variant(t, f.good, func(b []byte) []byte { copy(b[part.Offset:], "XXXX"); return b }),
			"squashfs", []string{"object 3", "offset " + itoa(part.Offset), `want "hsqs"`}, ""},
		{"wrong arch", f.arm64, "arch", []string{"arm64", "target nodes are amd64"}, ""},
		{"wrong version", f.good, "version", []string{`want "f7ffa5f_2401"`, `label org.opencontainers.image.version="` + version + `"`, `file name "metaseq_` + version + `"`}, "f7ffa5f_2401"},
		{"missing path", f.good, "path", []string{"/opt/metaseq/missing.sh", "not in the image"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := version
			if tc.version != "" {
				v = tc.version
			}
			rep, err := sif.Validate(context.Background(), tc.path, sif.ValidateOptions{
				Arch: "x86_64", Version: v,
				RequiredPaths: []string{"/opt/metaseq/train.sh", "/opt/metaseq/missing.sh"}[:pathCount(tc.name)],
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK {
				t.Fatalf("report OK for a broken image: %+v", rep.Checks)
			}
			var failed []string
			for _, e := range rep.Failures() {
				var se *sif.Error
				if !errors.As(e, &se) {
					t.Fatalf("failure %v is not a *sif.Error", e)
				}
				failed = append(failed, se.Check)
				if se.Check == tc.wantCheck {
					for _, w := range tc.wantIn {
						if !strings.Contains(e.Error(), w) {
							t.Errorf("failure %q does not mention %q", e, w)
						}
					}
				}
			}
			if !contains(failed, tc.wantCheck) {
				t.Errorf("failed checks %v, want %q among them", failed, tc.wantCheck)
			}
		})
	}
}

func pathCount(name string) int {
	if name == "missing path" {
		return 2
	}
	return 1
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestValidateGood(t *testing.T) {
	f := getFixtures(t)
	for _, tc := range []struct {
		name string
		path string
		opts sif.ValidateOptions
	}{
		{"version from label", f.signed, sif.ValidateOptions{Arch: "amd64", Version: version, RequiredPaths: []string{"/opt/metaseq/train.sh"}, RequireSigned: true}},
		{"version from file name", variant(t, f.noMeta, func(b []byte) []byte { return b }), sif.ValidateOptions{Version: "nometa"}},
		{"version label via squashfs", f.noMeta, sif.ValidateOptions{Version: version, Arch: "x86_64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := sif.Validate(context.Background(), tc.path, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK {
				t.Fatalf("good image failed: %v", rep.Err())
			}
		})
	}
	rep, _ := sif.Validate(context.Background(), f.good, sif.ValidateOptions{RequireSigned: true})
	if rep.OK {
		t.Error("unsigned image passed RequireSigned")
	}
}

func TestVerify(t *testing.T) {
	f := getFixtures(t)
	ringA, err := sif.ReadKeyRing(f.keyAFile)
	if err != nil {
		t.Fatal(err)
	}
	ringB, err := sif.ReadKeyRing(f.keyBFile)
	if err != nil {
		t.Fatal(err)
	}
	ringAB, err := sif.ReadKeyRing(f.keyBFile, f.keyAFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		ring   openpgp.KeyRing
		ok     bool
		wantIn string
	}{
		{"signed, right key", f.signed, ringA, true, ""},
		{"signed, key among others", f.signed, ringAB, true, ""},
		{"signed by another key", f.signed, ringB, false, "does not verify with the given keys"},
		{"unsigned", f.good, ringA, false, "unsigned: no signature covers object group 1"},
		{"tampered partition", f.tamper, ringA, false, "object 3 (FS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := sif.Verify(context.Background(), tc.path, tc.ring)
			if err != nil {
				t.Fatal(err)
			}
			if v.OK != tc.ok {
				t.Fatalf("OK = %v, want %v: %+v", v.OK, tc.ok, v)
			}
			msg := v.Error
			for _, s := range v.Signatures {
				msg += " " + s.Error
			}
			if tc.ok {
				if len(v.Signatures) != 1 || v.Signatures[0].Signer != "Key A (gpuorch test) <a@example.org>" ||
					len(v.Signatures[0].Objects) != 3 {
					t.Errorf("signatures = %+v", v.Signatures)
				}
				return
			}
			if !strings.Contains(msg, tc.wantIn) {
				t.Errorf("failure %q does not mention %q", msg, tc.wantIn)
			}
		})
	}
}

func FuzzInspect(f *testing.F) {
	if fx := getFixturesIfPossible(); fx != nil {
		b, err := os.ReadFile(fx.signed)
		if err == nil {
			f.Add(b)
			f.Add(b[:4096+512])
		}
	}
	f.Add([]byte("#!/usr/bin/env run-singularity\n\x00SIF_MAGIC\x0001\x0002\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := sif.InspectBytes("fuzz.sif", data, sif.InspectOptions{})
		if err == nil {
			for _, d := range img.Descriptors {
				if d.Offset < 0 || d.Size < 0 || d.Offset+d.Size > int64(len(data)) {
					t.Fatalf("accepted descriptor %d outside the file: [%d,+%d) in %d bytes", d.ID, d.Offset, d.Size, len(data))
				}
			}
		}
		rep := sif.ValidateBytes("fuzz.sif", data, sif.ValidateOptions{Arch: "amd64", Version: "1"})
		if err != nil && rep.OK {
			t.Fatalf("Inspect failed (%v) but Validate passed", err)
		}
	})
}

func getFixturesIfPossible() *fixtures {
	if _, err := exec.LookPath("mksquashfs"); err != nil || buildFixtures() != nil {
		return nil
	}
	return fix
}
