package sbatch

import (
	"reflect"
	"strings"
	"testing"
)

func TestRepeatable(t *testing.T) {
	tests := []struct {
		argv []string
		want bool
	}{
		{[]string{"squeue", "--noheader"}, true},
		{[]string{"sacct", "-X"}, true},
		{[]string{"sinfo"}, true},
		{[]string{"scancel", "5"}, true},
		{[]string{"scontrol", "show", "node", "-o"}, true},
		{[]string{"scontrol", "-o", "show", "job", "5"}, true},
		{[]string{"scontrol", "requeue", "5"}, false},
		{[]string{"scontrol", "reconfigure"}, false},
		{[]string{"scontrol", "ping"}, false},
		{[]string{"scontrol"}, false},
		{[]string{"sacctmgr", "-n", "-P", "show", "qos"}, true},
		{[]string{"sacctmgr", "list", "assoc"}, true},
		{[]string{"sacctmgr", "-i", "add", "qos", "x"}, false},
		{[]string{"sacctmgr", "-i", "modify", "qos", "where", "name=show", "set", "Priority=1"}, false},
		{[]string{"sbatch", "--parsable"}, false},
		{[]string{"srun", "-N1", "true"}, false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.argv, " "), func(t *testing.T) {
			if got := repeatable(tt.argv[0], tt.argv[1:]); got != tt.want {
				t.Errorf("repeatable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	out := `Configuration data as of 2026-12-04T13:45:18
AccountingStorageHost   = localhost
AuthAltParameters       = jwt_key=/etc/slurm/jwt_hs256.key
AcctGatherNodeFreq      = 0 sec
ClusterName             = ci
SlurmctldParameters     = (null)

Cgroup Support Configuration:
AllowedRAMSpace         = 100.0%
ClusterName             = not-the-first

Slurmctld(primary) at vm is UP
`
	want := map[string]string{
		"AccountingStorageHost": "localhost", "AuthAltParameters": "jwt_key=/etc/slurm/jwt_hs256.key",
		"AcctGatherNodeFreq": "0 sec", "ClusterName": "ci", "SlurmctldParameters": "(null)", "AllowedRAMSpace": "100.0%",
	}
	if got := parseConfig(out); !reflect.DeepEqual(got, want) {
		t.Errorf("parseConfig:\n got %q\nwant %q", got, want)
	}
}
