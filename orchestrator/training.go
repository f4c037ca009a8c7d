package orchestrator

// TrainingSpec is the [training] table of an experiment spec: a multi-node
// training run rendered as an sbatch job (see docs/training.md).
type TrainingSpec struct {
}
