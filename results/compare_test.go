package results

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func loadExp(t *testing.T, id string, scale float64) *Results {
	t.Helper()
	res, err := Load(context.Background(), NewLocalStore(sloExperiment(t, id, scale)), id)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func find(c *Comparison, key, metric string) *CompareRow {
	for i := range c.Rows {
		if c.Rows[i].Key == key && c.Rows[i].Metric == metric {
			return &c.Rows[i]
		}
	}
	return nil
}

func TestCompareDeltas(t *testing.T) {
	a, b := loadExp(t, "base", 1), loadExp(t, "new", 1.25)
	// In the new experiment task indices differ (the sweep was reordered):
	// rows still match by sweep point.
	for i := range b.Tasks {
		b.Tasks[i].Task = strings.Replace(b.Tasks[i].Task, "t", "x", 1)
	}
	b.Tasks[0].Errors = 20
	c := Compare([]string{"base", "new"}, []*Results{a, b}, false, false)
	if len(c.Rows) != 3*len(CompareMetrics) {
		t.Fatalf("%d rows, want %d", len(c.Rows), 3*len(CompareMetrics))
	}
	p99 := find(c, "slo-exp-2 rate=200", "p99_ms")
	if p99 == nil || *p99.Values[0].Value != 30 || *p99.Values[1].Value != 37.5 ||
		*p99.Values[1].Delta != 7.5 || *p99.Values[1].DeltaPct != 25 || p99.Values[0].Delta != nil || p99.Task != "t1-rate=200" {
		t.Errorf("p99 row: %+v", p99)
	}
	errs := find(c, "slo-exp-2 rate=100", "errors")
	if errs == nil || *errs.Values[1].Delta != 8 || math.Abs(*errs.Values[1].DeltaPct-66.666) > 0.01 {
		t.Errorf("errors row: %+v", errs)
	}
	// The incomplete task has no percentiles: values missing, no delta.
	if r := find(c, "slo-exp-2 rate=400", "p99_ms"); r == nil || r.Values[0].Value != nil || r.Values[1].Delta != nil {
		t.Errorf("missing p99: %+v", r)
	}
	// A task only in one experiment shows up with the other side missing.
	b.Tasks = b.Tasks[:2]
	c = Compare([]string{"base", "new"}, []*Results{a, b}, false, false)
	if r := find(c, "slo-exp-2 rate=400", "offered_rps"); r == nil || r.Values[1].Value != nil || *r.Values[0].Value != 400 {
		t.Errorf("one-sided row: %+v", r)
	}

	// Steps and classes on request.
	c = Compare([]string{"base", "new"}, []*Results{a, b}, true, true)
	if r := find(c, "slo-exp-2 rate=100 step=1", "slo_attainment"); r == nil || *r.Values[0].Value != 1 || *r.Values[1].Delta != 0 {
		t.Errorf("step row: %+v", r)
	}
	if r := find(c, "slo-exp-2 rate=200 class=bg", "p99_ms"); r == nil || *r.Values[1].DeltaPct != 25 {
		t.Errorf("class row: %+v", r)
	}
	// Order: task, then total, class, step.
	var keys []string
	for _, r := range c.Rows {
		if r.Metric == "errors" {
			keys = append(keys, r.Key)
		}
	}
	want := "slo-exp-2 rate=100|slo-exp-2 rate=100 class=bg|slo-exp-2 rate=100 class=fg|slo-exp-2 rate=100 step=0|slo-exp-2 rate=100 step=1|slo-exp-2 rate=200"
	if got := strings.Join(keys, "|"); !strings.HasPrefix(got, want) {
		t.Errorf("order:\n got %s\nwant prefix %s", got, want)
	}
}

func TestCompareOutputs(t *testing.T) {
	a, b := loadExp(t, "base", 1), loadExp(t, "new", 1.25)
	c := Compare([]string{"base", "new"}, []*Results{a, b}, false, false)

	var txt bytes.Buffer
	ht := c.Table(Human)
	ht.WriteText(&txt)
	if strings.Join(ht.Columns, " ") != "key metric base new Δ new" {
		t.Errorf("text columns %v", ht.Columns)
	}
	for _, want := range []string{"+7.50 (+25.0%)", "90.00%", "+0.00 pp"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, txt.String())
		}
	}

	var buf bytes.Buffer
	mt := c.Table(Machine)
	mt.WriteCSV(&buf)
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "key,task,breakdown,class,step,metric,base,new,delta_new,delta_pct_new" || len(recs) != 1+len(c.Rows) {
		t.Fatalf("csv header %v, %d records", recs[0], len(recs))
	}
	for _, r := range recs[1:] {
		if r[0] == "slo-exp-2 rate=200" && r[5] == "p99_ms" && strings.Join(r[6:], ",") != "30,37.5,7.5,25" {
			t.Errorf("csv p99 row: %v", r)
		}
	}

	js, _ := json.Marshal(c.Rows)
	var back []struct {
		Key    string `json:"key"`
		Metric string `json:"metric"`
		Values []struct {
			Experiment string   `json:"experiment"`
			Value      *float64 `json:"value"`
			Delta      *float64 `json:"delta"`
		} `json:"values"`
	}
	if err := json.Unmarshal(js, &back); err != nil || len(back) != len(c.Rows) || back[0].Values[1].Experiment != "new" {
		t.Fatalf("json: %v %s", err, js)
	}
}
