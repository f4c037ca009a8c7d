package sif_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/sif"
)

func TestImageWriteText(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	fsObj := sif.Descriptor{ID: 3, Type: "FS", GroupID: 1, Offset: 4096, Size: 8192, FS: "Squashfs", PartType: "*System", Arch: "amd64"}
	cases := []struct {
		name string
		img  sif.Image
		want string
	}{
		{"full", sif.Image{
			Path: "/img/m.sif", FileSize: 12345,
			Header: sif.Header{ID: "abc-123", Version: "01", Arch: "amd64", CreatedAt: at, ModifiedAt: at.Add(time.Hour),
				DescriptorsFree: 45, DescriptorsOffset: 4096, DescriptorsSize: 28080, DataOffset: 32176, DataSize: 9000},
			Descriptors: []sif.Descriptor{
				{ID: 1, Type: "Def.FILE", GroupID: 1, Offset: 32176, Size: 40},
				{ID: 2, Type: "JSON.Generic", Name: "inspect-metadata.json", GroupID: 1, Offset: 32216, Size: 100},
				fsObj,
				{ID: 4, Type: "Signature", LinkedID: 1, LinkedGroup: true, Offset: 40000, Size: 500},
				{ID: 5, Type: "Signature", LinkedID: 3, Offset: 40500, Size: 500},
			},
			Primary: &fsObj,
			Deffile: "Bootstrap: localimage\nFrom: base.sif\n",
			Metadata: &sif.Metadata{Source: "inspect-metadata.json",
				Labels:      map[string]string{"version": "f7ffa5f_2306", "maintainer": "gpuorch"},
				Environment: map[string]string{"90-environment.sh": "#!/bin/sh\nexport A=1\n"},
				Runscript:   "#!/bin/sh\nexec train\n"},
			Signatures: []sif.Signature{
				{ID: 4, Hash: "SHA-256", Fingerprint: "0A1B", Signs: 1, LinkedGroup: true},
				{ID: 5, Hash: "SHA-256", Fingerprint: "0A1B", Signs: 3},
			},
			Warnings: []string{"not in the text"},
		}, `Image:        /img/m.sif (12345 bytes)
ID:           abc-123
SIF version:  01
Arch:         amd64
Created:      2026-03-01 12:30:00 UTC
Modified:     2026-03-01 13:30:00 UTC
Descriptors:  5 used, 45 free, table at 4096 (28080 bytes)
Data:         9000 bytes at offset 32176

ID  GROUP  LINK     TYPE          NAME                   OFFSET  SIZE  DETAIL
1   1      -        Def.FILE      -                      32176   40    
2   1      -        JSON.Generic  inspect-metadata.json  32216   100   
3   1      -        FS            -                      4096    8192  Squashfs *System amd64
4   -      group 1  Signature     -                      40000   500   
5   -      3        Signature     -                      40500   500   

Primary partition: object 3, Squashfs, amd64, 8192 bytes at offset 4096
Signature:    object 4 signs group 1, SHA-256, key 0A1B (not verified; see image verify)
Signature:    object 5 signs object 3, SHA-256, key 0A1B (not verified; see image verify)

Labels (from inspect-metadata.json):
  maintainer: gpuorch
  version: f7ffa5f_2306
Environment 90-environment.sh:
  #!/bin/sh
  export A=1
Runscript:
  #!/bin/sh
  exec train
Definition file:
  Bootstrap: localimage
  From: base.sif
`},
		{"headers only", sif.Image{Path: "x.sif", FileSize: 10, Header: sif.Header{ID: "id", Version: "01", Arch: "arm64", CreatedAt: at, ModifiedAt: at}},
			`Image:        x.sif (10 bytes)
ID:           id
SIF version:  01
Arch:         arm64
Created:      2026-03-01 12:30:00 UTC
Modified:     2026-03-01 12:30:00 UTC
Descriptors:  0 used, 0 free, table at 0 (0 bytes)
Data:         0 bytes at offset 0

ID  GROUP  LINK  TYPE  NAME  OFFSET  SIZE  DETAIL

Primary partition: none
Signatures:   none
`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := c.img.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			if b.String() != c.want {
				t.Fatalf("got:\n%s\nwant:\n%s", b.String(), c.want)
			}
		})
	}
}

func TestReportWriteText(t *testing.T) {
	off := int64(4096)
	rep := &sif.Report{Path: "m.sif", Checks: []sif.Check{
		{Name: "bounds", OK: true, Detail: "5 objects inside the file"},
		{Name: "squashfs", OK: false, Detail: `no "hsqs" magic`, Object: 3, Offset: &off},
		{Name: "path", OK: false, Detail: "missing", Inside: "/opt/train.sh"},
		{Name: "version", OK: false, Detail: `want "abc"`},
	}}
	want := `ok   bounds    5 objects inside the file
FAIL squashfs  no "hsqs" magic [object 3 offset 4096]
FAIL path      missing [/opt/train.sh]
FAIL version   want "abc"
`
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestVerificationWriteText(t *testing.T) {
	cases := []struct {
		name string
		v    sif.Verification
		want string
	}{
		{"verified", sif.Verification{OK: true, Signatures: []sif.SignatureResult{
			{Signature: 3, Fingerprint: "0A1B", Signer: "CLI <cli@example.org>", Objects: []uint32{1, 2}, OK: true}}},
			"ok   signature object 3 by CLI <cli@example.org> (0A1B): objects [1 2] intact\n"},
		{"failed", sif.Verification{Signatures: []sif.SignatureResult{{Signature: 3, Error: "signed by an unknown key"}}, Error: "image does not verify with the given keys"},
			"FAIL signature object 3: signed by an unknown key\nFAIL image does not verify with the given keys\n"},
		{"unsigned", sif.Verification{Error: "no signatures"}, "FAIL no signatures\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := c.v.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			if b.String() != c.want {
				t.Fatalf("got %q, want %q", b.String(), c.want)
			}
		})
	}
}

// TestWriteTextOfRealImages renders what Inspect, Validate and Verify say
// about built images (the lines `gpuorch image` prints).
func TestWriteTextOfRealImages(t *testing.T) {
	f := getFixtures(t)
	ctx := context.Background()
	var b bytes.Buffer
	img, err := sif.Inspect(ctx, f.signed, sif.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Squashfs *System amd64", "Primary partition: object ", "(not verified; see image verify)\n", "Labels (from inspect-metadata.json):\n", "  org.opencontainers.image.version: " + version + "\n", "Definition file:\n  Bootstrap: localimage\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("inspect text lacks %q:\n%s", want, b.String())
		}
	}

	b.Reset()
	rep, err := sif.Validate(ctx, f.good, sif.ValidateOptions{Version: "abc", RequiredPaths: []string{"/opt/metaseq/train.sh"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ok   path", `FAIL version   want "abc"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("validate text lacks %q:\n%s", want, b.String())
		}
	}

	b.Reset()
	rep, err = sif.Validate(ctx, f.good, sif.ValidateOptions{Arch: "aarch64"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "target nodes are arm64") {
		t.Errorf("validate text lacks the arch failure:\n%s", b.String())
	}

	for _, c := range []struct {
		keys, want string
	}{
		{f.keyAFile, "ok   signature object "},
		{f.keyBFile, "does not verify with the given keys"},
	} {
		ring, err := sif.ReadKeyRing(c.keys)
		if err != nil {
			t.Fatal(err)
		}
		v, err := sif.Verify(ctx, f.signed, ring)
		if err != nil {
			t.Fatal(err)
		}
		b.Reset()
		if err := v.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("verify text lacks %q:\n%s", c.want, b.String())
		}
	}
}
