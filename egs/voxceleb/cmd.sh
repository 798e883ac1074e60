# Job runners used by run.sh, in Kaldi's style:
#   $train_cmd  CPU jobs (features, extraction, scoring)
#   $cuda_cmd   GPU jobs (training)
# utils/run.pl runs the jobs on this machine; --max-jobs-run caps how many run at once.
export train_cmd="utils/run.pl"
export cuda_cmd="utils/run.pl --gpu 1"

# On a SLURM cluster (the working directory shared by the nodes), submit the jobs as sbatch arrays
# instead; steps/train.sh then runs `srun torchrun` in the allocation (--nnodes N asks for N nodes).
# Site flags (partition, account, gres names) go in a config: utils/slurm.pl --config conf/slurm.conf
# (format in utils/slurm.pl's docstring).
# export train_cmd="utils/slurm.pl --mem 4G --time 4:00:00"
# export cuda_cmd="utils/slurm.pl --gpu 1 --num-threads 8 --mem 32G --time 3-00:00:00"
