package sbatch

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Job is a typed sbatch batch script: the #SBATCH options and the body.
// Empty/zero fields are left out of the script. Free-text fields (names,
// paths, comments) may hold any printable text: Render quotes them the way
// sbatch parses #SBATCH lines. Structured fields (counts, times, array specs,
// node lists) are checked against Slurm's syntax. Control characters are
// rejected everywhere. See docs/slurm.md.
type Job struct {
	Name      string // --job-name
	Partition string // --partition (a name, or a comma-separated list)
	QOS       string // --qos
	Account   string // --account

	Nodes         string   // --nodes: "2" or "2-4"
	NTasks        int      // --ntasks
	NTasksPerNode int      // --ntasks-per-node
	CPUsPerTask   int      // --cpus-per-task
	GPUs          string   // --gpus: total, "4" or "a100:4"
	GPUsPerNode   string   // --gpus-per-node: "2" or "a100:2"
	GPUsPerTask   string   // --gpus-per-task
	GRES          []string // --gres, joined by ',': "gpu:2", "shard:4", "gpu:a100:1"
	Mem           string   // --mem: "4G", "500M", "0" (all of the node)
	MemPerCPU     string   // --mem-per-cpu
	MemPerGPU     string   // --mem-per-gpu
	Time          string   // --time: Slurm time syntax ("30", "1:00:00", "2-00:00:00"); see FormatTime

	// Array is the --array spec ("0-999", "0,3,7-9", "0-15:4"); ArrayThrottle
	// adds "%N" (at most N tasks running at once). See ArraySpec.
	Array         string
	ArrayThrottle int

	// Output, Error and Input are filename patterns (see FilePattern:
	// %A master job id, %a array index, %j job id, %x name); build them
	// from user text with PatternIn or LiteralPattern.
	Output  FilePattern // --output
	Error   FilePattern // --error
	Input   FilePattern // --input
	WorkDir string      // --chdir (literal: Slurm replaces nothing in it)

	// Export is sbatch's --export: "ALL", "NONE", or a comma-separated list
	// of variable names, optionally led by "ALL". Values are never put in
	// --export (its commas cannot be escaped): use Env.
	Export string
	// Env is exported at the top of the body, quoted, in order.
	Env []EnvVar

	Dependency  string // --dependency: "afterok:123:456", "afterany:7_3", "singleton"
	Signal      string // --signal: "USR1@60", "B:TERM@120"
	Requeue     *bool  // true: --requeue, false: --no-requeue, nil: cluster default
	Exclusive   bool   // --exclusive
	Hold        bool   // --hold
	NodeList    string // --nodelist: "node[1-2],node4"
	Exclude     string // --exclude
	Constraint  string // --constraint
	Reservation string // --reservation
	Comment     string // --comment
	OpenMode    string // --open-mode: "append" or "truncate"

	// Extra are further options, rendered after the typed ones: for options
	// this type does not name (e.g. "gpu-bind", "mps"). Names are checked;
	// values are quoted like every other value.
	Extra []Option

	// Shebang defaults to "#!/bin/bash".
	Shebang string
	// Body is the script after the header: commands built from quoted words,
	// and Raw lines of trusted template code.
	Body []Line
}

// Option is one #SBATCH --name[=value] line. An empty Value renders a bare
// flag (--name).
type Option struct {
	Name  string
	Value string
}

// Bool returns a pointer to b, for Job.Requeue.
func Bool(b bool) *bool { return &b }

var (
	reNodes      = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)
	reGPUs       = regexp.MustCompile(`^([A-Za-z0-9_.-]+:)?[0-9]+$`)
	reGRES       = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]*(:[A-Za-z0-9_.-]+)?(:[0-9]+[KMGT]?)?$`)
	reMem        = regexp.MustCompile(`^[0-9]+[KMGT]?$`)
	reTime       = regexp.MustCompile(`^([0-9]+|[0-9]+:[0-9]{1,2}|[0-9]+:[0-9]{1,2}:[0-9]{1,2}|[0-9]+-[0-9]{1,2}|[0-9]+-[0-9]{1,2}:[0-9]{1,2}|[0-9]+-[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}|UNLIMITED|INFINITE|unlimited|infinite)$`)
	reArray      = regexp.MustCompile(`^[0-9]+(-[0-9]+(:[0-9]+)?)?(,[0-9]+(-[0-9]+(:[0-9]+)?)?)*$`)
	reExport     = regexp.MustCompile(`^(ALL|NONE|NIL|[A-Za-z_][A-Za-z0-9_]*)(,[A-Za-z_][A-Za-z0-9_]*)*$`)
	reDependency = regexp.MustCompile(`^[A-Za-z_]+(:[0-9_+]+)*([,?][A-Za-z_]+(:[0-9_+]+)*)*$`)
	reSignal     = regexp.MustCompile(`^([BR]{1,2}:)?[A-Za-z0-9]+(@[0-9]+)?$`)
	reHostlist   = regexp.MustCompile(`^[A-Za-z0-9_.\-\[\],]+$`)
	reOptName    = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// FormatTime renders d in Slurm's D-HH:MM:SS time syntax, rounded up to a
// whole second (Slurm's own granularity is a minute for limits).
func FormatTime(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	s := int64((d + time.Second - 1) / time.Second)
	days, s := s/86400, s%86400
	h, s := s/3600, s%3600
	m, s := s/60, s%60
	if days > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", days, h, m, s)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}

// ArraySpec renders indices as a compact --array spec: sorted, duplicates
// dropped, runs written as ranges ("0-3,7,9-10").
func ArraySpec(indices []int) string {
	if len(indices) == 0 {
		return ""
	}
	idx := append([]int(nil), indices...)
	sortInts(idx)
	var b strings.Builder
	start, prev := idx[0], idx[0]
	flush := func() {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(start))
		if prev > start {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(prev))
		}
	}
	for _, v := range idx[1:] {
		if v == prev {
			continue
		}
		if v == prev+1 {
			prev = v
			continue
		}
		flush()
		start, prev = v, v
	}
	flush()
	return b.String()
}

func sortInts(a []int) {
	// insertion sort is fine for sweep sizes; avoid importing sort for one call
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// directive is one rendered option before quoting.
type directive struct {
	name, value string
	flag        bool // bare --name
}

// directives validates the job and lists its #SBATCH options in a fixed
// order.
func (j *Job) directives() ([]directive, error) {
	var ds []directive
	var errs []string
	text := func(name, v string) {
		if v == "" {
			return
		}
		if err := checkText(name, v); err != nil {
			errs = append(errs, err.Error())
			return
		}
		ds = append(ds, directive{name: name, value: v})
	}
	match := func(name, v string, re *regexp.Regexp, want string) {
		if v == "" {
			return
		}
		if !re.MatchString(v) {
			errs = append(errs, fmt.Sprintf("%s: %q is not %s", name, v, want))
			return
		}
		ds = append(ds, directive{name: name, value: v})
	}
	count := func(name string, v int) {
		if v < 0 {
			errs = append(errs, fmt.Sprintf("%s: negative value %d", name, v))
		} else if v > 0 {
			ds = append(ds, directive{name: name, value: strconv.Itoa(v)})
		}
	}
	flag := func(name string, on bool) {
		if on {
			ds = append(ds, directive{name: name, flag: true})
		}
	}

	text("job-name", j.Name)
	text("partition", j.Partition)
	text("qos", j.QOS)
	text("account", j.Account)
	match("nodes", j.Nodes, reNodes, `a node count ("2" or "2-4")`)
	count("ntasks", j.NTasks)
	count("ntasks-per-node", j.NTasksPerNode)
	count("cpus-per-task", j.CPUsPerTask)
	match("gpus", j.GPUs, reGPUs, `a GPU count ("4" or "type:4")`)
	match("gpus-per-node", j.GPUsPerNode, reGPUs, `a GPU count ("2" or "type:2")`)
	match("gpus-per-task", j.GPUsPerTask, reGPUs, `a GPU count ("1" or "type:1")`)
	if len(j.GRES) > 0 {
		ok := true
		for _, g := range j.GRES {
			if !reGRES.MatchString(g) {
				errs = append(errs, fmt.Sprintf("gres: %q is not name[:type][:count] (e.g. \"gpu:2\", \"shard:4\")", g))
				ok = false
			}
		}
		if ok {
			ds = append(ds, directive{name: "gres", value: strings.Join(j.GRES, ",")})
		}
	}
	match("mem", j.Mem, reMem, `a size ("4G", "500M")`)
	match("mem-per-cpu", j.MemPerCPU, reMem, `a size ("2G")`)
	match("mem-per-gpu", j.MemPerGPU, reMem, `a size ("16G")`)
	match("time", j.Time, reTime, `a Slurm time ("30", "1:30:00", "2-00:00:00")`)
	switch {
	case j.Array == "" && j.ArrayThrottle != 0:
		errs = append(errs, "array: throttle set without an array spec")
	case j.Array != "":
		if !reArray.MatchString(j.Array) {
			errs = append(errs, fmt.Sprintf("array: %q is not an array spec (\"0-999\", \"0,3,7-9\", \"0-15:4\"); put the throttle in ArrayThrottle", j.Array))
		} else if j.ArrayThrottle < 0 {
			errs = append(errs, fmt.Sprintf("array: negative throttle %d", j.ArrayThrottle))
		} else {
			v := j.Array
			if j.ArrayThrottle > 0 {
				v += "%" + strconv.Itoa(j.ArrayThrottle)
			}
			ds = append(ds, directive{name: "array", value: v})
		}
	}
	pattern := func(name string, p FilePattern) {
		if p == "" {
			return
		}
		if err := checkPattern(name, p); err != nil {
			errs = append(errs, err.Error())
			return
		}
		ds = append(ds, directive{name: name, value: string(p)})
	}
	pattern("output", j.Output)
	pattern("error", j.Error)
	pattern("input", j.Input)
	text("chdir", j.WorkDir)
	match("export", j.Export, reExport, `ALL, NONE or a list of variable names (put values in Env)`)
	match("dependency", j.Dependency, reDependency, `a dependency list ("afterok:123:456")`)
	match("signal", j.Signal, reSignal, `a signal spec ("USR1@60", "B:TERM@120")`)
	if j.Requeue != nil {
		if *j.Requeue {
			flag("requeue", true)
		} else {
			flag("no-requeue", true)
		}
	}
	flag("exclusive", j.Exclusive)
	flag("hold", j.Hold)
	match("nodelist", j.NodeList, reHostlist, `a host list ("node[1-2],node4")`)
	match("exclude", j.Exclude, reHostlist, `a host list ("node[1-2],node4")`)
	text("constraint", j.Constraint)
	text("reservation", j.Reservation)
	text("comment", j.Comment)
	if j.OpenMode != "" && j.OpenMode != "append" && j.OpenMode != "truncate" {
		errs = append(errs, fmt.Sprintf("open-mode: %q is not append or truncate", j.OpenMode))
	} else if j.OpenMode != "" {
		ds = append(ds, directive{name: "open-mode", value: j.OpenMode})
	}
	for _, o := range j.Extra {
		if !reOptName.MatchString(o.Name) {
			errs = append(errs, fmt.Sprintf("extra option: %q is not an option name (lower-case letters, digits, '-'; without the leading --)", o.Name))
			continue
		}
		if o.Value == "" {
			flag(o.Name, true)
			continue
		}
		if patternOption(o.Name) {
			pattern(o.Name, FilePattern(o.Value))
			continue
		}
		text(o.Name, o.Value)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid sbatch job: %s", strings.Join(errs, "; "))
	}
	return ds, nil
}

// Validate checks the job as Render would, without rendering.
func (j *Job) Validate() error {
	_, err := j.Render()
	return err
}

// Render returns the batch script. The #SBATCH header comes right after the
// shebang (sbatch stops reading options at the first command), then Env as
// export lines, then Body.
func (j *Job) Render() (string, error) {
	ds, err := j.directives()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	shebang := j.Shebang
	if shebang == "" {
		shebang = "#!/bin/bash"
	}
	if !strings.HasPrefix(shebang, "#!/") {
		return "", fmt.Errorf("invalid sbatch job: shebang %q must start with \"#!/\"", shebang)
	}
	if err := checkText("shebang", shebang); err != nil {
		return "", fmt.Errorf("invalid sbatch job: %w", err)
	}
	b.WriteString(shebang)
	b.WriteByte('\n')
	for _, d := range ds {
		b.WriteString("#SBATCH --")
		b.WriteString(d.name)
		if !d.flag {
			b.WriteByte('=')
			b.WriteString(quoteDirective(d.value))
		}
		b.WriteByte('\n')
	}
	for i, e := range j.Env {
		a, err := renderAssign(fmt.Sprintf("env[%d]", i), e)
		if err != nil {
			return "", fmt.Errorf("invalid sbatch job: %w", err)
		}
		b.WriteString("export ")
		b.WriteString(a)
		b.WriteByte('\n')
	}
	for i, l := range j.Body {
		s, err := l.render(fmt.Sprintf("body line %d", i+1))
		if err != nil {
			return "", fmt.Errorf("invalid sbatch job: %w", err)
		}
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String(), nil
}
