package sbatch

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

// Records as Slurm 22.05 prints them (test/slurm cluster), trimmed.
const (
	nodeLine = "NodeName=node1 Arch=x86_64 CoresPerSocket=4  CPUAlloc=1 CPUTot=4 Gres=gpu:4,shard:8 " +
		"OS=Linux 6.18.44-fc-v1147 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=2000 State=MIXED Owner=N/A " +
		"MCS_label=N/A Partitions=debug  CfgTRES=cpu=4,mem=2000M,billing=4,gres/gpu=4,gres/shard=8 " +
		"AllocTRES= CapWatts=n/a ExtSensorsJoules=n/s"
	jobLine = "JobId=44 JobName=a  b Reason=x c UserId=root(0) JobState=PENDING Reason=JobHeldUser " +
		"Dependency=(null) ExitCode=0:0 Partition=debug AllocNode:Sid=localhost:15241 NodeList= NumTasks=1 " +
		"CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* " +
		"NtasksPerN:B:S:C=0:0:*:* Command=(null) WorkDir=/tmp Comment=x=1 /tmp/y=2 --opt=3 a=b  " +
		"StdErr=/dev/null Power= \n"
)

func TestParseOneliner(t *testing.T) {
	tests := []struct {
		name string
		line string
		want map[string]string
	}{
		{"node: OS with blanks and '#', double-blank separators, empty AllocTRES", nodeLine, map[string]string{
			"NodeName": "node1", "Arch": "x86_64", "CoresPerSocket": "4", "CPUAlloc": "1", "CPUTot": "4",
			"Gres": "gpu:4,shard:8", "OS": "Linux 6.18.44-fc-v1147 #1 SMP PREEMPT_DYNAMIC @0", "RealMemory": "2000",
			"State": "MIXED", "Owner": "N/A", "MCS_label": "N/A", "Partitions": "debug",
			"CfgTRES": "cpu=4,mem=2000M,billing=4,gres/gpu=4,gres/shard=8", "AllocTRES": "", "CapWatts": "n/a",
			"ExtSensorsJoules": "n/s",
		}},
		{"job: keys with '/' and ':', values with '=' and '/', trailing blank", jobLine, map[string]string{
			"JobId": "44", "JobName": "a  b", "Reason": "JobHeldUser", "UserId": "root(0)", "JobState": "PENDING",
			"Dependency": "(null)", "ExitCode": "0:0", "Partition": "debug", "AllocNode:Sid": "localhost:15241",
			"NodeList": "", "NumTasks": "1", "CPUs/Task": "1", "ReqB:S:C:T": "0:0:*:*",
			"TRES": "cpu=1,mem=100M,node=1,billing=1", "Socks/Node": "*", "NtasksPerN:B:S:C": "0:0:*:*",
			"Command": "(null)", "WorkDir": "/tmp", "Comment": "x=1 /tmp/y=2 --opt=3 a=b", "StdErr": "/dev/null",
			"Power": "",
		}},
		// The case the former sbatch parser was written for, with the
		// comment's inner blanks kept (Slurm prints them as set).
		{"values with blanks", "JobId=5 JobName=a b Comment=x  y Reason=None Command=/tmp/a.sh arg", map[string]string{
			"JobId": "5", "JobName": "a b", "Comment": "x  y", "Reason": "None", "Command": "/tmp/a.sh arg",
		}},
		{"reason with brackets", "NodeName=n9 State=DOWN+DRAIN Reason=Not responding [slurm@2026-12-04T13:36:31] Weight=1",
			map[string]string{"NodeName": "n9", "State": "DOWN+DRAIN", "Reason": "Not responding [slurm@2026-12-04T13:36:31]", "Weight": "1"}},
		{"the multi-line format (no -o)", "JobId=7 JobName=x\n   UserId=u(1)\n", map[string]string{"JobId": "7", "JobName": "x", "UserId": "u(1)"}},
		{"tabs and CR", "A=1\tB=two words\r", map[string]string{"A": "1", "B": "two words"}},
		{"not keys: lower case, path, flag, separators at the ends", "Comment=a b=1 /x/Y=2 --Z=3 A/=4 A:=5 /A=6 _A=7 9A=8",
			map[string]string{"Comment": "a b=1 /x/Y=2 --Z=3 A/=4 A:=5 /A=6 _A=7 9A=8"}},
		{"key glued to the previous value is not a key", "A=x,B=1 C=2", map[string]string{"A": "x,B=1", "C": "2"}},
		{"words before the first key are dropped", "junk words A=1", map[string]string{"A": "1"}},
		{"repeated key: the last wins", "A=1 B=2 A=3", map[string]string{"A": "3", "B": "2"}},
		{"empty", "", map[string]string{}},
		{"no key", "No nodes in the system", map[string]string{}},
		{"non-ASCII kept", "JobName=é ü 漢字 X=1", map[string]string{"JobName": "é ü 漢字", "X": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseOneliner(tt.line); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseOneliner(%q)\n got %q\nwant %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseOneliners(t *testing.T) {
	out := "PartitionName=debug AllowQos=ALL Nodes=node[1-4] State=UP\n\nPartitionName=gpu AllowQos=high,low Nodes=node[3-4] State=UP\n"
	got := ParseOneliners(out)
	if len(got) != 2 || got[0]["PartitionName"] != "debug" || got[1]["AllowQos"] != "high,low" || got[1]["Nodes"] != "node[3-4]" {
		t.Fatalf("got %q", got)
	}
	if recs := ParseOneliners("No jobs in the system\n"); len(recs) != 0 {
		t.Fatalf("a line without fields gave %q", recs)
	}
}

// renderOneliner writes m back as scontrol would, keys sorted.
func renderOneliner(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

// FuzzParseOneliner checks, for any line, that every key is key-shaped,
// every value appears in the line without surrounding blanks, and that
// writing the record back and parsing it again gives the same record (no
// value holds something that reads as a field).
func FuzzParseOneliner(f *testing.F) {
	for _, s := range []string{nodeLine, jobLine, "A=1 B=2 A=3", "Comment=x  y Z=", "A=x,B=1 C=2", "a=1", "A/B:C=1", "A/=1", "=", " A= B=", "A=1\tB=\t2"} {
		f.Add(s)
	}
	for _, s := range hostile {
		f.Add("Comment=" + s + " JobState=PENDING")
	}
	f.Fuzz(func(t *testing.T, line string) {
		m := ParseOneliner(line)
		for k, v := range m {
			if keyLen(k+"=") != len(k) {
				t.Fatalf("key %q from %q is not key-shaped", k, line)
			}
			if !strings.Contains(line, k+"=") {
				t.Fatalf("key %q not in %q", k, line)
			}
			if !strings.Contains(line, v) || strings.Trim(v, blanks) != v {
				t.Fatalf("value %q of %q: not in %q or not trimmed", v, k, line)
			}
		}
		again := ParseOneliner(renderOneliner(m))
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip of %q:\n first %q\nsecond %q", line, m, again)
		}
	})
}
