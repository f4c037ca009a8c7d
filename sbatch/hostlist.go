package sbatch

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gpuorch/gpuorch/internal/clip"
)

// MaxHosts bounds what ExpandHostlist expands: more hosts than any cluster
// has, far fewer than a typo like node[1-999999999] would make.
const MaxHosts = 1 << 16

// ExpandHostlist expands a Slurm host list ("node[1-4],gpu[01-02,7]",
// "rack[1-2]n[1-3]") into host names, in order, as `scontrol show
// hostnames` does, without asking Slurm: comma-separated items, each
// literal text and bracket groups of comma-separated numbers and ranges
// (lo-hi, zero-padded to lo's width), a group expanding as the cartesian
// product. Text after an item's last group is refused, as Slurm refuses
// it, and so are empty or unbalanced brackets, ranges that run backwards
// and lists of more than MaxHosts hosts.
func ExpandHostlist(s string) ([]string, error) {
	var items []string
	depth, start := 0, 0
	for i := 0; i <= len(s); i++ {
		switch {
		case i == len(s) || (s[i] == ',' && depth == 0):
			if it := strings.TrimSpace(s[start:i]); it != "" {
				items = append(items, it)
			}
			start = i + 1
		case s[i] == '[':
			if depth++; depth > 1 {
				return nil, fmt.Errorf("host list %s: '[' inside brackets", clip.Quote(s))
			}
		case s[i] == ']':
			if depth--; depth < 0 {
				return nil, fmt.Errorf("host list %s: ']' without '['", clip.Quote(s))
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("host list %s: '[' without ']'", clip.Quote(s))
	}
	var hosts []string
	for _, it := range items {
		h, err := expandItem(it, MaxHosts-len(hosts))
		if err != nil {
			return nil, fmt.Errorf("host list %s: %w", clip.Quote(s), err)
		}
		hosts = append(hosts, h...)
	}
	return hosts, nil
}

// expandItem expands one item of a host list into at most room names.
func expandItem(it string, room int) ([]string, error) {
	out := []string{""}
	for it != "" {
		open := strings.IndexByte(it, '[')
		if open < 0 {
			if len(out) > 1 || strings.Contains(it, "]") {
				return nil, fmt.Errorf("%s after a bracket group: Slurm takes no text after the last group", clip.Quote(it))
			}
			return []string{out[0] + it}, nil
		}
		end := strings.IndexByte(it, ']')
		nums, err := expandGroup(it[open+1:end], room)
		if err != nil {
			return nil, err
		}
		if len(out)*len(nums) > room {
			return nil, fmt.Errorf("more than %d hosts", MaxHosts)
		}
		next := make([]string, 0, len(out)*len(nums))
		for _, o := range out {
			for _, n := range nums {
				next = append(next, o+it[:open]+n)
			}
		}
		out, it = next, it[end+1:]
	}
	return out, nil
}

// expandGroup expands the inside of a bracket group: "1-3,07,10-11".
func expandGroup(g string, room int) ([]string, error) {
	if g == "" {
		return nil, fmt.Errorf("empty brackets")
	}
	var out []string
	for _, r := range strings.Split(g, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := hostNumber(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = hostNumber(hi); err != nil {
				return nil, err
			}
		}
		if b < a {
			return nil, fmt.Errorf("range %s runs backwards", clip.Quote(r))
		}
		if b-a >= room-len(out) {
			return nil, fmt.Errorf("more than %d hosts", MaxHosts)
		}
		for n := a; n <= b; n++ {
			s := strconv.Itoa(n)
			if pad := len(lo) - len(s); pad > 0 {
				s = strings.Repeat("0", pad) + s
			}
			out = append(out, s)
		}
	}
	return out, nil
}

func hostNumber(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, fmt.Errorf("%s is not a host number (up to 9 digits)", clip.Quote(s))
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%s is not a host number", clip.Quote(s))
		}
	}
	return strconv.Atoi(s)
}
