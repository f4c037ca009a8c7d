package sbatch

import "strings"

// ParseOneliners reads the output of `scontrol show job|node|partition|… -o`
// (--oneliner): one record a line, each read by ParseOneliner. Lines with no
// field are skipped.
func ParseOneliners(out string) []map[string]string {
	var recs []map[string]string
	for _, line := range strings.Split(out, "\n") {
		if m := ParseOneliner(line); len(m) > 0 {
			recs = append(recs, m)
		}
	}
	return recs
}

// ParseOneliner reads one record of `scontrol show … -o`: Key=Value fields
// separated by one or more blanks (spaces, tabs, line breaks).
//
// Values may hold blanks and '=' (OS=Linux 6.1 #1 SMP, Reason=Not responding
// [slurm@…], TRES=cpu=1,mem=1G, Comment=a b=c), so a field starts only at a
// word, after a blank or at the start of the line, shaped like one of
// Slurm's keys followed by '=': an upper-case letter, then letters, digits
// and '_', with '/' or ':' allowed between them (CPUs/Task, ReqB:S:C:T,
// AllocNode:Sid, MCS_label). A value is the text up to the blanks before the
// next field, kept as printed (inner runs of blanks too) but without the
// blanks around it. Slurm does not escape values, so a user-chosen value
// (JobName, Comment, WorkDir) holding " Key=" cannot be told from a field:
// it is split there, and when a key repeats the last field wins.
func ParseOneliner(line string) map[string]string {
	m := map[string]string{}
	key, start := "", -1 // the current field's key and where its value starts
	for i := 0; i < len(line); i++ {
		if i > 0 && !isBlank(line[i-1]) || isBlank(line[i]) {
			continue
		}
		n := keyLen(line[i:])
		if n == 0 {
			continue
		}
		if key != "" {
			m[key] = strings.Trim(line[start:i], blanks)
		}
		key, start = line[i:i+n], i+n+1
		i += n
	}
	if key != "" {
		m[key] = strings.Trim(line[start:], blanks)
	}
	return m
}

// blanks separate fields; line breaks count too, so the multi-line format
// (scontrol show without -o) reads as one record.
const blanks = " \t\r\n"

func isBlank(c byte) bool { return strings.IndexByte(blanks, c) >= 0 }

// keyLen returns the length of the key that s starts with, when s starts
// with "Key=", else 0.
func keyLen(s string) int {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return 0
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '=':
			return i
		case c == '/' || c == ':':
			// a separator must sit between word characters
			if i+1 >= len(s) || !isWordChar(s[i+1]) {
				return 0
			}
		case !isWordChar(c):
			return 0
		}
	}
	return 0
}

func isWordChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
}
