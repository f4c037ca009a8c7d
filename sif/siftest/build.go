// Package siftest builds SIF images for tests and benchmarks the way
// Apptainer does: a squashfs of a root tree (made with mksquashfs from
// Debian's squashfs-tools) as the primary partition, plus a definition file
// and an inspect-metadata.json object, optionally PGP-signed.
package siftest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/sylabs/sif/v2/pkg/integrity"
	ssif "github.com/sylabs/sif/v2/pkg/sif"
)

// ErrNoMksquashfs is returned when mksquashfs is not installed.
var ErrNoMksquashfs = errors.New("mksquashfs not found (apt-get install squashfs-tools)")

// Options describe an image.
type Options struct {
	Arch      string            // partition arch, Go naming; default amd64
	Labels    map[string]string // /.singularity.d/labels.json and the metadata object
	Env       map[string]string // KEY=VALUE for /.singularity.d/env/90-environment.sh
	Runscript string            // /.singularity.d/runscript
	// Files are extra files by absolute path inside the image, e.g.
	// "/opt/metaseq/train.sh"; a value starting with "#!" is made executable.
	Files   map[string]string
	Deffile string
	// NoMetadataObject leaves out inspect-metadata.json, so readers must fall
	// back to /.singularity.d inside the squashfs (older images).
	NoMetadataObject bool
	// BigFile, when > 0, adds /data/blob of that many pseudo-random bytes,
	// stored uncompressed (for benchmarks).
	BigFile int64
	// Sign signs every object group with this key.
	Sign *openpgp.Entity
}

// Build writes the image to path. It needs mksquashfs on PATH.
func Build(path string, o Options) error {
	mksq, err := exec.LookPath("mksquashfs")
	if err != nil {
		return ErrNoMksquashfs
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	work, err := os.MkdirTemp(filepath.Dir(path), ".siftest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	if err := writeTree(root, o); err != nil {
		return err
	}
	sq := filepath.Join(work, "part.sqfs")
	args := []string{root, sq, "-noappend", "-quiet", "-no-progress", "-all-root", "-mkfs-time", "0", "-all-time", "0"}
	if o.BigFile > 0 {
		args = append(args, "-noI", "-noD", "-noF", "-noX", "-no-duplicates")
	}
	if out, err := exec.Command(mksq, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mksquashfs: %v: %s", err, out)
	}
	part, err := os.Open(sq)
	if err != nil {
		return err
	}
	defer part.Close()

	var dis []ssif.DescriptorInput
	if o.Deffile != "" {
		di, err := ssif.NewDescriptorInput(ssif.DataDeffile, strings.NewReader(o.Deffile))
		if err != nil {
			return err
		}
		dis = append(dis, di)
	}
	if !o.NoMetadataObject {
		md, err := inspectMetadata(o)
		if err != nil {
			return err
		}
		di, err := ssif.NewDescriptorInput(ssif.DataGenericJSON, bytes.NewReader(md), ssif.OptObjectName("inspect-metadata.json"))
		if err != nil {
			return err
		}
		dis = append(dis, di)
	}
	di, err := ssif.NewDescriptorInput(ssif.DataPartition, part,
		ssif.OptPartitionMetadata(ssif.FsSquash, ssif.PartPrimSys, o.Arch))
	if err != nil {
		return err
	}
	dis = append(dis, di)
	fi, err := ssif.CreateContainerAtPath(path, ssif.OptCreateWithDescriptors(dis...),
		ssif.OptCreateWithTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if o.Sign != nil {
		s, err := integrity.NewSigner(fi, integrity.OptSignWithEntity(o.Sign))
		if err != nil {
			fi.UnloadContainer()
			return fmt.Errorf("sign %s: %w", path, err)
		}
		if err := s.Sign(); err != nil {
			fi.UnloadContainer()
			return fmt.Errorf("sign %s: %w", path, err)
		}
	}
	return fi.UnloadContainer()
}

func writeTree(root string, o Options) error {
	files := map[string]string{}
	if o.Labels != nil {
		b, err := json.MarshalIndent(o.Labels, "", "\t")
		if err != nil {
			return err
		}
		files["/.singularity.d/labels.json"] = string(b)
	}
	var env strings.Builder
	env.WriteString("#!/bin/sh\n")
	for _, k := range sortedKeys(o.Env) {
		fmt.Fprintf(&env, "export %s=%q\n", k, o.Env[k])
	}
	files["/.singularity.d/env/90-environment.sh"] = env.String()
	if o.Runscript != "" {
		files["/.singularity.d/runscript"] = o.Runscript
	}
	for p, c := range o.Files {
		files[p] = c
	}
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(c, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			return err
		}
	}
	if o.BigFile > 0 {
		if err := writeBlob(filepath.Join(root, "data", "blob"), o.BigFile); err != nil {
			return err
		}
	}
	return nil
}

// writeBlob writes n bytes of a cheap xorshift stream: incompressible enough
// and much faster than crypto/rand.
func writeBlob(path string, n int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	x := uint64(0x9E3779B97F4A7C15)
	for n > 0 {
		for i := 0; i+8 <= len(buf); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			buf[i], buf[i+1], buf[i+2], buf[i+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
			buf[i+4], buf[i+5], buf[i+6], buf[i+7] = byte(x>>32), byte(x>>40), byte(x>>48), byte(x>>56)
		}
		w := int64(len(buf))
		if w > n {
			w = n
		}
		if _, err := f.Write(buf[:w]); err != nil {
			f.Close()
			return err
		}
		n -= w
	}
	return f.Close()
}

func inspectMetadata(o Options) ([]byte, error) {
	env := map[string]string{}
	if len(o.Env) > 0 {
		var b strings.Builder
		for _, k := range sortedKeys(o.Env) {
			fmt.Fprintf(&b, "export %s=%q\n", k, o.Env[k])
		}
		env["90-environment.sh"] = b.String()
	}
	labels := o.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	doc := map[string]any{
		"type": "container",
		"data": map[string]any{"attributes": map[string]any{
			"labels":      labels,
			"environment": env,
			"runscript":   o.Runscript,
			"deffile":     o.Deffile,
			"startscript": "",
			"apps":        map[string]any{},
		}},
	}
	return json.Marshal(doc)
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// NewKey makes a fresh Ed25519 PGP key pair (fast, unlike RSA).
func NewKey(name, email string) (*openpgp.Entity, error) {
	return openpgp.NewEntity(name, "gpuorch test", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
}

// WritePublicKey writes e's public key, armored, to path.
func WritePublicKey(path string, e *openpgp.Entity) error {
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		return err
	}
	if err := e.Serialize(w); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// PartitionOffset returns the byte offset of the primary partition.
func PartitionOffset(path string) (int64, error) {
	fi, err := ssif.LoadContainerFromPath(path, ssif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		return 0, err
	}
	defer fi.UnloadContainer()
	d, err := fi.GetDescriptor(ssif.WithPartitionType(ssif.PartPrimSys))
	if err != nil {
		return 0, err
	}
	return d.Offset(), nil
}

// FlipByte inverts one byte of the file at off.
func FlipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		f.Close()
		return err
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
