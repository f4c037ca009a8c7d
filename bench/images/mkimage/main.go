// Command mkimage builds a SIF image for benchmarks and manual testing, the
// way the sif package's tests do (mksquashfs, then the sif library): an
// optional incompressible /data/blob of -size bytes, labels with -version,
// optionally signed with a fresh PGP key whose public half goes to -key.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/gpuorch/gpuorch/sif/siftest"
)

func main() {
	out := flag.String("o", "", "output SIF path (required)")
	size := flag.Int64("size", 0, "bytes of incompressible data in /data/blob")
	version := flag.String("version", "f7ffa5f_2306", "org.opencontainers.image.version label")
	arch := flag.String("arch", "amd64", "partition architecture")
	key := flag.String("key", "", "sign with a fresh key and write its armored public key here")
	noMeta := flag.Bool("no-metadata", false, "leave out inspect-metadata.json (labels only inside the squashfs)")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	o := siftest.Options{
		Arch:             *arch,
		Labels:           map[string]string{"org.opencontainers.image.version": *version, "org.opencontainers.image.title": "gpuorch bench image"},
		Env:              map[string]string{"METASEQ_HOME": "/opt/metaseq_stack"},
		Runscript:        "#!/bin/sh\nexec metaseq-train \"$@\"\n",
		Files:            map[string]string{"/opt/metaseq/train.sh": "#!/bin/sh\nexec metaseq-train \"$@\"\n"},
		Deffile:          "Bootstrap: localimage\nFrom: base.sif\n\n%post\n    pip install metaseq\n",
		NoMetadataObject: *noMeta,
		BigFile:          *size,
	}
	if *key != "" {
		e, err := siftest.NewKey("gpuorch bench", "bench@example.org")
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkimage:", err)
			os.Exit(1)
		}
		if err := siftest.WritePublicKey(*key, e); err != nil {
			fmt.Fprintln(os.Stderr, "mkimage:", err)
			os.Exit(1)
		}
		o.Sign = e
	}
	if err := siftest.Build(*out, o); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}
