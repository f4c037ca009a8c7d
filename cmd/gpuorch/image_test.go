package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sif/siftest"
)

// runInProcess runs the CLI in this process and returns its output and
// exit code.
func runInProcess(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	code := run(t.Context(), app, append([]string{"gpuorch"}, args...), &errOut)
	return out.String(), errOut.String(), code
}

func TestImageCLI(t *testing.T) {
	testgate.Mksquashfs(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "metaseq_f7ffa5f_2306.sif")
	key, err := siftest.NewKey("CLI", "cli@example.org")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := siftest.NewKey("Other", "other@example.org")
	pub, otherPub := filepath.Join(dir, "k.asc"), filepath.Join(dir, "o.asc")
	siftest.WritePublicKey(pub, key)
	siftest.WritePublicKey(otherPub, other)
	err = siftest.Build(img, siftest.Options{Labels: map[string]string{"version": "f7ffa5f_2306"},
		Files: map[string]string{"/opt/train.sh": "#!/bin/sh\n"}, Sign: key})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(img)
	trunc := filepath.Join(dir, "trunc.sif")
	os.WriteFile(trunc, b[:len(b)-10], 0o644)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"inspect", []string{"image", "inspect", img}, 0, "Squashfs *System amd64"},
		{"inspect json", []string{"image", "inspect", "--json", img}, 0, `"fs": "Squashfs"`},
		{"inspect missing", []string{"image", "inspect", filepath.Join(dir, "nope.sif")}, exitUsage, "no such file"},
		{"inspect truncated", []string{"image", "inspect", trunc}, exitFailure, "past the end"},
		{"validate ok", []string{"image", "validate", "--version", "f7ffa5f_2306", "--require", "/opt/train.sh", img}, 0, "ok   path"},
		{"validate version", []string{"image", "validate", "--version", "abc", img}, exitFailure, `FAIL version   want "abc"`},
		{"validate arch", []string{"image", "validate", "--arch", "aarch64", img}, exitFailure, "target nodes are arm64"},
		{"verify ok", []string{"image", "verify", "--key", pub, img}, 0, "objects [1 2] intact"},
		{"verify other key", []string{"image", "verify", "--key", otherPub, img}, exitFailure, "does not verify with the given keys"},
		{"verify bad key file", []string{"image", "verify", "--key", img, img}, exitUsage, "read key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runInProcess(t, tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
			if strings.Contains(strings.Join(tc.args, " "), "--json") {
				var v map[string]any
				if err := json.Unmarshal([]byte(out), &v); err != nil {
					t.Fatalf("not JSON: %v", err)
				}
			}
		})
	}
}

func TestTrainCLI(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "t.toml")
	os.WriteFile(spec, []byte(`[experiment]
name = "opt125m"
[training]
nodes = 2
gpus_per_node = 4
image = "/shared/metaseq.sif"
model_size = "125m"
`), 0o644)
	log := filepath.Join(dir, "train.log")
	os.WriteFile(log, []byte(`0: 2026-01-01 00:00:01 | INFO | train_inner | {"loss": "15", "wps": "0", "ups": "0", "num_updates": "5", "wall": "10"}
0: 2026-01-01 00:00:02 | INFO | train_inner | {"loss": "14", "wps": "1000", "ups": "2", "num_updates": "10", "wall": "12.5"}
0: 2026-01-01 00:00:03 | INFO | train_inner | {"loss": "13", "wps": "3000", "ups": "2", "num_updates": "15", "wall": "15"}
`), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"render", []string{"train", "render", "--run-dir", "/shared/runs/x", spec}, 0, "#SBATCH --ntasks-per-node=4"},
		{"render set", []string{"train", "render", "--set", "training.model_size=7b", spec}, exitUsage, `unknown size "7b"`},
		{"render no training", []string{"train", "render", log}, exitUsage, ""},
		{"parse", []string{"train", "parse", log}, 0, "2000 words/s mean"},
		{"parse json", []string{"train", "parse", "--json", log}, 0, `"seconds_per_update": 0.5`},
		{"parse points", []string{"train", "parse", "--points", "--experiment", "e", log}, 0, "training,experiment=e,tag=train_inner "},
		{"parse empty", []string{"train", "parse", spec}, exitFailure, "no train_inner lines"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runInProcess(t, tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}

// TestImageExitCodes needs no built image: a bad argument or key file exits
// 2, a file that is not a SIF image 1.
func TestImageExitCodes(t *testing.T) {
	dir := t.TempDir()
	notSIF := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notSIF, []byte("not an image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"image", "inspect"}, exitUsage, "image inspect: want exactly one IMAGE argument"},
		{[]string{"image", "validate", notSIF, notSIF}, exitUsage, "want exactly one IMAGE argument"},
		{[]string{"image", "validate", filepath.Join(dir, "nope.sif")}, exitUsage, "image validate: stat "},
		{[]string{"image", "verify", "--key", filepath.Join(dir, "nope.asc"), notSIF}, exitUsage, "read key"},
		{[]string{"image", "inspect", notSIF}, exitFailure, notSIF},
		{[]string{"image", "validate", notSIF}, exitFailure, "check(s) failed"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, dir, tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}
