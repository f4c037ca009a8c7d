//go:build spank

// C side of the gpuorch SPANK plugin: the symbols Slurm looks for
// (plugin_name/type/version via SPANK_PLUGIN, the option table) cannot be
// defined from Go, and option callbacks must not enter Go. Go is called
// only from parent-side callbacks (init_post_opt in sbatch/srun, user_init
// in slurmstepd), never after a fork.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <slurm/spank.h>

SPANK_PLUGIN(gpuorch, 1);

extern char *gpuorchSliceEnv(char *pools, char *profile, char *qos, char **err);

// Option values, kept by the callbacks: spank_option_getopt does not work
// in init_post_opt (sbatch/srun side), and callbacks must stay in C.
static char *opt_value[3];

static int opt_cb(int val, const char *optarg, int remote) {
	if (val < 1 || val > 2 || optarg == NULL)
		return -1;
	free(opt_value[val]);
	opt_value[val] = strdup(optarg);
	return 0;
}

// Registered from slurm_spank_init: a static spank_options table is not
// picked up by sbatch 22.05 from this library.
static struct spank_option gpuorch_options[] = {
	{"gpu-slice", "PROFILE", "run in the GPU slice of workload profile PROFILE (gpuorch pools file)", 1, 1, opt_cb},
	{"gpu-qos", "LEVEL", "QoS level for --gpu-slice: low, medium, high, critical", 1, 2, opt_cb},
	SPANK_OPTIONS_TABLE_END
};

int slurm_spank_init(spank_t sp, int ac, char **av) {
	for (int i = 0; gpuorch_options[i].name; i++)
		if (spank_option_register(sp, &gpuorch_options[i]) != ESPANK_SUCCESS) {
			slurm_error("gpuorch: cannot register --%s", gpuorch_options[i].name);
			return -1;
		}
	return 0;
}

static const char *pools_arg(int ac, char **av) {
	for (int i = 0; i < ac; i++)
		if (strncmp(av[i], "pools=", 6) == 0)
			return av[i] + 6;
	return "/etc/slurm/gpuorch-pools.toml";
}

// slice_env resolves the options into NAME=VALUE lines (malloc'd), or NULL
// when --gpu-slice was not given. On error it logs and returns "".
static char *slice_env(spank_t sp, int ac, char **av, int *failed) {
	char *profile = opt_value[1], *qos = opt_value[2], *err = NULL;
	*failed = 0;
	if (profile == NULL && (spank_option_getopt(sp, &gpuorch_options[0], &profile) != ESPANK_SUCCESS || profile == NULL))
		return NULL;
	if (qos == NULL && spank_option_getopt(sp, &gpuorch_options[1], &qos) != ESPANK_SUCCESS)
		qos = NULL;
	char *env = gpuorchSliceEnv((char *)pools_arg(ac, av), profile, qos ? qos : "", &err);
	if (env == NULL) {
		slurm_error("gpuorch: --gpu-slice=%s: %s", profile, err ? err : "unknown error");
		free(err);
		*failed = 1;
	}
	return env;
}

// In sbatch/srun: say which Slurm options the slice needs (SPANK cannot
// change the job request itself).
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av) {
	if (spank_remote(sp))
		return 0;
	int failed;
	char *env = slice_env(sp, ac, av, &failed);
	if (failed)
		return -1;
	if (env == NULL)
		return 0;
	char *hint = strstr(env, "GPUORCH_SLURM_OPTIONS=");
	if (hint) {
		char *end = strchr(hint, '\n');
		if (end) *end = 0;
		fprintf(stderr, "gpuorch: this slice needs %s\n", hint + strlen("GPUORCH_SLURM_OPTIONS="));
	}
	free(env);
	return 0;
}

// In slurmstepd, before the tasks fork: put the slice's MPS limits and the
// enforcer's GPUORCH_SLICE_* variables into the job's environment.
int slurm_spank_user_init(spank_t sp, int ac, char **av) {
	int failed;
	char *env = slice_env(sp, ac, av, &failed);
	if (failed)
		return -1;
	if (env == NULL)
		return 0;
	char *save = NULL;
	for (char *line = strtok_r(env, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq || strncmp(line, "GPUORCH_SLURM_OPTIONS=", 22) == 0) continue;
		*eq = 0;
		if (spank_setenv(sp, line, eq + 1, 1) != ESPANK_SUCCESS)
			slurm_error("gpuorch: cannot set %s", line);
	}
	free(env);
	return 0;
}
