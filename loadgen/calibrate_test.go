package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Issue 13, class 6d: when no calibration request succeeds, the error says
// what the target answered — the status and the start of the body — and
// hints at the usual cause (README's slo-exp-1 line without --protocol
// kserve sent GET / to a KServe server and said only "no successful
// request").
func TestCalibrationFailureSaysWhatTheTargetAnswered(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/health/ready":
		case r.URL.Path == "/v2/models/resnet/infer":
			w.Write([]byte(`{"outputs":[]}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"no route ` + r.Method + " " + r.URL.Path + `"}` + strings.Repeat(" padding", 100)))
		}
	}))
	defer srv.Close()
	cases := []struct {
		name     string
		protocol string
		model    string
		want     []string
	}{
		{"plain http against a KServe server", "", "resnet", []string{
			"no successful request out of 4", "GET " + srv.URL + " answered 404 Not Found", `"{\"error\":\"no route GET /\"}`,
			"…", "a KServe v2 server wants --protocol kserve"}},
		{"a model the server does not have", "kserve", "nosuch", []string{
			"POST " + srv.URL + "/v2/models/nosuch/infer answered 404 Not Found", `is model "nosuch" served there?`, "--protocol kserve sends KServe v2 inference requests"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &Workload{Name: "slo", Open: []*OpenLoop{{Model: c.model, Proc: NewFixed(50), SLOFactor: 2}}}
			cfg := &Config{Duration: Duration(time.Second), Target: TargetConfig{URL: srv.URL, Protocol: c.protocol},
				SLO: SLOConfig{CalibrationRequests: 3}}
			_, err := Run(context.Background(), cfg, w, RunOptions{})
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range c.want {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("%v\nwant it to say %q", err, s)
				}
			}
			if len(err.Error()) > 1000 {
				t.Fatalf("%d bytes: the body is not cut short: %v", len(err.Error()), err)
			}
		})
	}
}
