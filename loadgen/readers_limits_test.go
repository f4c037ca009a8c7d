package loadgen

import (
	"testing"

	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
)

// Datasets and Azure traces are read within their limits: over-size,
// over-long lines and /dev/zero end at once with an error naming the file
// and the limit, instead of growing memory without end.
func TestReadersRefuseHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Dataset, "prompts.jsonl") {
		t.Run("dataset/"+c.Name, func(t *testing.T) {
			_, err := LoadPrompts(c.Path)
			limitiotest.Check(t, c, err)
			_, err = NewTarget(TargetConfig{URL: "http://127.0.0.1:1", Protocol: "openai", PromptFiles: []string{c.Path}})
			limitiotest.Check(t, c, err)
		})
	}
	for _, c := range limitiotest.Cases(t, limitio.Trace, "invocations_per_function_md.anon.d01.csv") {
		t.Run("azure trace/"+c.Name, func(t *testing.T) {
			_, err := ReadAzureTrace(c.Path)
			limitiotest.Check(t, c, err)
		})
	}
}
