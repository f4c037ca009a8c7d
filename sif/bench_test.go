package sif_test

import (
	"context"
	"os"
	"testing"

	"github.com/gpuorch/gpuorch/sif"
)

// Benchmarks on a real image: GPUORCH_BENCH_SIF names it (bench/images/run.sh
// sets it to a 2 GiB image it builds), GPUORCH_BENCH_KEY its public key.
// Without them the small signed test image is used.
func benchImage(b *testing.B) (img, key string) {
	if p := os.Getenv("GPUORCH_BENCH_SIF"); p != "" {
		return p, os.Getenv("GPUORCH_BENCH_KEY")
	}
	f := getFixtures(b)
	return f.signed, f.keyAFile
}

func BenchmarkInspectHeaders(b *testing.B) {
	img, _ := benchImage(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := sif.Inspect(ctx, img, sif.InspectOptions{HeadersOnly: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInspect(b *testing.B) {
	img, _ := benchImage(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := sif.Inspect(ctx, img, sif.InspectOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	img, key := benchImage(b)
	if key == "" {
		b.Skip("GPUORCH_BENCH_KEY not set")
	}
	ring, err := sif.ReadKeyRing(key)
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(img)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	ctx := context.Background()
	for b.Loop() {
		v, err := sif.Verify(ctx, img, ring)
		if err != nil || !v.OK {
			b.Fatalf("verify: %v %+v", err, v)
		}
	}
}
