package orchestrator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sif/siftest"
)

// The seed's profile parameters as its users give them: Hostnames as one
// comma-separated string, ApptainerImageVersion and TrainingScript left at
// their defaults, the image and scripts in one directory.
func TestTrainingSeedProfileParameters(t *testing.T) {
	src := `[experiment]
name = "metaseq"

[training]
hosts = "gpu01,gpu02"           # Hostnames
image_dir = "/shared/metaseq"   # where metaseq_<ApptainerImageVersion>.sif and the scripts are
gpus_per_node = 8
`
	spec, err := ParseSpec("seed.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := spec.Training.WithDefaults(spec.Slurm)
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tr.Hosts, " ") != "gpu01 gpu02" || tr.Nodes != 2 || tr.ImageVersion != "f7ffa5f_2306" ||
		tr.Image != "/shared/metaseq/metaseq_f7ffa5f_2306.sif" || tr.Script != "/shared/metaseq/train_7.5.sh" || !tr.ScriptOnHost() {
		t.Fatalf("resolved: hosts %q nodes %d version %q image %q script %q", tr.Hosts, tr.Nodes, tr.ImageVersion, tr.Image, tr.Script)
	}
	script := renderTraining(t, tr, TrainingJobOptions{Name: "metaseq", RunDir: "/shared/runs/m1"})
	for _, want := range []string{"#SBATCH --nodelist=gpu01,gpu02", "--bind /shared/metaseq ", "/shared/metaseq/metaseq_f7ffa5f_2306.sif /shared/metaseq/train_7.5.sh --log-format json"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}

	// Given values win; a list of hosts works as before; --set takes the
	// comma-separated form too.
	spec, err = ParseSpec("seed.toml", []byte(src+`image_version = "1.1.6"
script = "train_1.3.sh"
`), []string{"training.hosts=gpu03, gpu04,gpu05"})
	if err != nil {
		t.Fatal(err)
	}
	tr = spec.Training.WithDefaults(spec.Slurm)
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tr.Hosts, " ") != "gpu03 gpu04 gpu05" || tr.Nodes != 3 || tr.Image != "/shared/metaseq/metaseq_1.1.6.sif" || tr.Script != "/shared/metaseq/train_1.3.sh" {
		t.Errorf("overrides: hosts %q nodes %d image %q script %q", tr.Hosts, tr.Nodes, tr.Image, tr.Script)
	}
	spec, _ = ParseSpec("list.toml", []byte(strings.Replace(src, `hosts = "gpu01,gpu02"`, `hosts = ["gpu01", "gpu02"]`, 1)), nil)
	if tr := spec.Training.WithDefaults(spec.Slurm); strings.Join(tr.Hosts, ",") != "gpu01,gpu02" {
		t.Errorf("hosts list: %q", tr.Hosts)
	}

	for _, tc := range []struct{ name, edit, want string }{
		{"empty host", `hosts = "gpu01,,gpu02"`, `training.hosts: entry 1 ("") is not a host name`},
		{"host type", `hosts = 3`, "seed.toml:5: training.hosts"},
		{"image and image_dir", `image = "/x/y.sif"`, "training.image_dir: give image (the SIF file) or image_dir"},
		{"version as path", `image_version = "../../etc/x"`, `training.image_version: "../../etc/x" cannot be part of a file name`},
		{"relative dir", `image_dir = "metaseq"`, "training.image_dir: must be an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := src
			if strings.HasPrefix(tc.edit, "hosts") || strings.HasPrefix(tc.edit, "image_dir") {
				key, _, _ := strings.Cut(tc.edit, " =")
				lines := strings.Split(text, "\n")
				for i, l := range lines {
					if strings.HasPrefix(l, key+" ") {
						lines[i] = tc.edit
					}
				}
				text = strings.Join(lines, "\n")
			} else {
				text += tc.edit + "\n"
			}
			spec, err := ParseSpec("seed.toml", []byte(text), nil)
			if err == nil {
				tr := spec.Training.WithDefaults(spec.Slurm)
				err = tr.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// The image check of the seed's layout: the image resolved from image_dir
// and the version, the script a file beside it.
func TestTrainingImageDirCheck(t *testing.T) {
	testgate.Mksquashfs(t)
	dir := t.TempDir()
	if err := siftest.Build(filepath.Join(dir, "metaseq_f7ffa5f_2306.sif"), siftest.Options{}); err != nil {
		t.Fatal(err)
	}
	tr := TrainingSpec{Hosts: HostList{"gpu01"}, GPUsPerNode: 1, ImageDir: dir}.WithDefaults(SlurmSpec{})
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	err := CheckTrainingImage(context.Background(), tr)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "train_7.5.sh")+": not a file in image_dir") {
		t.Fatalf("missing script: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "train_7.5.sh"), []byte("#!/bin/sh\nexec metaseq-train \"$@\"\n"), 0o755)
	if err := CheckTrainingImage(context.Background(), tr); err != nil {
		t.Fatalf("image_dir with image and script: %v", err)
	}
	tr = TrainingSpec{Hosts: HostList{"gpu01"}, GPUsPerNode: 1, ImageDir: dir, ImageVersion: "1.1.6"}.WithDefaults(SlurmSpec{})
	if err := CheckTrainingImage(context.Background(), tr); err == nil || !strings.Contains(err.Error(), "metaseq_1.1.6.sif") {
		t.Errorf("missing image version: %v", err)
	}
}
