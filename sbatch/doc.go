// Package sbatch renders sbatch scripts safely (every user value shell-quoted)
// and talks to Slurm through its command-line tools.
package sbatch
