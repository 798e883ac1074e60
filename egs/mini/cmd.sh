# Job runners used by run.sh, in Kaldi's style:
#   $train_cmd  CPU jobs (features, extraction, scoring)
#   $cuda_cmd   GPU jobs (training)
# utils/run.pl runs the jobs on this machine; --max-jobs-run caps how many run at once.
export train_cmd="utils/run.pl"
export cuda_cmd="utils/run.pl --gpu 1"
